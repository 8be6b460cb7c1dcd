"""The Prometheus endpoint: a collector over the service's own counters, served by trio.

Daemon side: may import trio, ``prometheus_client`` (its text format and
parser; the optional ``scand[metrics]`` extra) and the service it reports on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from scand.metrics.collector import Refusals
    from scand.service import Service


class MetricsUnavailable(RuntimeError):
    """``[metrics]`` is configured but prometheus_client is not installed."""


async def start(nursery: trio.Nursery, service: Service, servers: list[Refusals]) -> int:
    """Start the endpoint named by ``service.config.metrics``; return the bound port."""
    try:
        from scand.metrics.collector import make_registry
        from scand.metrics.http import MetricsServer
    except ImportError as exc:
        raise MetricsUnavailable(
            f"metrics.listen is set but {exc.name} is not installed "
            "(pip install 'scand[metrics]')") from exc
    cfg = service.config.metrics
    server = MetricsServer(make_registry(service, servers), cfg.listen, cfg.allow)
    port: int = await nursery.start(server.run)
    return port

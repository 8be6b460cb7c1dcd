"""The Prometheus endpoint: a collector over the service's own counters, served by trio.

Daemon side: may import trio, ``prometheus_client`` (its text format and
parser; the optional ``scand[metrics]`` extra), the fronts' listener toolkit
and the service it reports on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scand.fronts.accept import FrontServer
    from scand.fronts.listen import Bound
    from scand.service import Service


class MetricsUnavailable(RuntimeError):
    """``[metrics]`` is configured but prometheus_client is not installed."""


def check_available() -> None:
    """Raise :class:`MetricsUnavailable` now (at start-up) if prometheus_client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MetricsUnavailable(
            f"metrics.listen is set but {exc.name} is not installed "
            "(pip install 'scand[metrics]')") from exc


def bind(listen: str, allow: tuple[str, ...]) -> Bound:
    """Bind ``metrics.listen`` (before privileges are dropped)."""
    check_available()
    # Everything server() needs is imported now, as root: after the drop the daemon's
    # user may not be able to read the installation (a clone in a 0700 directory).
    import scand.fronts.accept
    import scand.metrics.collector  # noqa: F401
    from scand.metrics.http import bind as bind_http

    return bind_http(listen, allow)


def server(service: Service, bound: Bound, fronts: list[FrontServer]) -> FrontServer:
    """The endpoint's FrontServer over the live counters of ``service`` and ``fronts``."""
    from scand.fronts.accept import FrontServer
    from scand.metrics.collector import make_registry
    from scand.metrics.http import MAX_SCRAPERS, MetricsFront

    front = MetricsFront(make_registry(service, fronts))
    return FrontServer(front, [bound], max_connections=MAX_SCRAPERS)

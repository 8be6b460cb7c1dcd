"""Three (or N) scand daemons on loopback ports, as a farm behind HAProxy: each with
Sophie TCP, the clamd front's TCP, the agent, PROXY v2 from 127.0.0.1, and an
optional shared cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Daemon, launch
from tests.farm.farmutil import free_port, wait_port


@dataclass
class Host:
    name: str
    n: int
    sophie: int
    clamd: int
    agent: int
    config: str
    daemon: Daemon | None = None

    def ports(self) -> tuple[str, int, int, int]:
        return self.name, self.sophie, self.clamd, self.agent


def make_hosts(count: int, cache: str = "", extra: str = "", first: int = 0) -> list[Host]:
    hosts = []
    for i in range(count):
        sophie, clamd, agent = free_port(), free_port(), free_port()
        config = (
            f'[server]\ntcp = ["127.0.0.1:{sophie}"]\ntcp_allow = ["127.0.0.0/8"]\n'
            "shutdown_grace = 10.0\n"
            f'[clamd_front]\ntcp = ["127.0.0.1:{clamd}"]\ntcp_allow = ["127.0.0.0/8"]\n'
            f'[farm]\nproxy_from = ["127.0.0.1/32"]\nagent = "127.0.0.1:{agent}"\n'
            "drain_delay = 1.5\n" + cache + extra)
        hosts.append(Host(f"s{i + 1}", first + i, sophie, clamd, agent, config))
    return hosts


def start_host(workdir: Path, host: Host, *args: str, workers: int = 1) -> Daemon:
    host.daemon = launch(workdir, host.n, *args, config=host.config, workers=workers)
    for port in (host.sophie, host.clamd, host.agent):
        wait_port(port)
    return host.daemon

"""The real programs of a farm, started and stopped by pid: HAProxy (with its stats
socket and ``-sf`` reloads), Redis nodes on loopback ports, and Redis Sentinels."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import time
from pathlib import Path

from bench.farm_load import haproxy_config
from tests.farm.farmutil import free_port

__all__ = ["HAProxy", "RedisFarm", "haproxy_config"]


def _wait(check: object, what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready in {limit}s")


def resp(port: int, *words: str, timeout: float = 5.0) -> str:
    """One RESP command to 127.0.0.1:port; the raw reply as text."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"*{len(words)}\r\n".encode()
                  + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words))
        time.sleep(0.05)
        return s.recv(65536).decode(errors="replace")


class Proc:
    """One child process with its log file; stopped by pid."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path) -> None:
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL,
                                         cwd=cwd)
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RedisNode(Proc):
    def __init__(self, directory: Path, name: str, replica_of: int | None = None) -> None:
        self.port = free_port()
        d = directory / name
        d.mkdir()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(d)]
        if replica_of is not None:
            cmd += ["--replicaof", "127.0.0.1", str(replica_of)]
        super().__init__(cmd, d / "redis.log", d)
        _wait(lambda: resp(self.port, "PING").startswith("+PONG"), f"redis {name}")

    def role(self) -> str:
        return resp(self.port, "ROLE").split("\r\n")[2]

    def dbsize(self) -> int:
        return int(resp(self.port, "DBSIZE")[1:].strip())


class SentinelNode(Proc):
    def __init__(self, directory: Path, name: str, master_port: int) -> None:
        self.port = free_port()
        d = directory / name
        d.mkdir()
        conf = d / "sentinel.conf"  # sentinel rewrites it: its own writable copy
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {d}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 2\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
            "sentinel parallel-syncs mymaster 1\n")
        super().__init__(["redis-sentinel", str(conf)], d / "sentinel.log", d)
        _wait(lambda: resp(self.port, "PING").startswith("+PONG"), f"sentinel {name}")

    def master_port(self) -> int:
        reply = resp(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return int(reply.split("\r\n")[4])


class RedisFarm:
    """A master, one replica and three sentinels."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisNode(directory, "redis-a")
        self.replica = RedisNode(directory, "redis-b", replica_of=self.master.port)
        _wait(lambda: "master_link_status:up" in resp(self.replica.port, "INFO", "replication"),
              "replication")
        self.sentinels = [SentinelNode(directory, f"sentinel{i}", self.master.port)
                          for i in range(3)]
        # Every sentinel knows the replica and the other sentinels before a failover.
        _wait(lambda: all(
            "OK 3 usable" in resp(s.port, "SENTINEL", "CKQUORUM", "mymaster")
            and str(self.replica.port) in resp(s.port, "SENTINEL", "REPLICAS", "mymaster")
            for s in self.sentinels), "sentinels", 20)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/mymaster"

    def failover(self, limit: float = 20.0) -> float:
        """SENTINEL FAILOVER; returns the seconds until every sentinel names the new master."""
        old = self.sentinels[0].master_port()
        t0 = time.monotonic()
        assert "+OK" in resp(self.sentinels[0].port, "SENTINEL", "FAILOVER", "mymaster")
        _wait(lambda: all(s.master_port() != old for s in self.sentinels), "failover", limit)
        return time.monotonic() - t0

    def nodes(self) -> list[RedisNode]:
        return [self.master, self.replica]

    def stop(self) -> None:
        for p in [*self.sentinels, self.replica, self.master]:
            p.stop()


class HAProxy:
    """haproxy -f <cfg> in the foreground; reload with a new process and -sf <old pid>."""

    def __init__(self, directory: Path, config: str) -> None:
        self.dir = directory
        self.cfg = directory / "haproxy.cfg"
        self.stats_sock = str(directory / "haproxy.sock")
        self.cfg.write_text(config.replace("@STATS@", self.stats_sock))
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.procs: list[Proc] = []
        self._start([])

    def _start(self, extra: list[str]) -> None:
        p = Proc(["haproxy", "-db", "-f", str(self.cfg), *extra], self.dir / "haproxy.log",
                 self.dir)
        self.procs.append(p)
        _wait(lambda: "Name" in self.command("show info"), "haproxy stats socket")

    @property
    def pid(self) -> int:
        return self.procs[-1].proc.pid

    def reload(self) -> None:
        """A new haproxy takes the listening sockets over from the old one (``-x``: no
        connection refused meanwhile); the old one finishes its connections and exits."""
        old = self.pid
        self._start(["-x", self.stats_sock, "-sf", str(old)])

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.stats_sock)
            s.sendall(line.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode(errors="replace")

    def servers(self, backend: str) -> dict[str, dict[str, str]]:
        """``show stat`` rows of one backend's servers, by server name."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

"""Issue 24, acceptance: a verdict cache nobody can forge, against a real redis-server.

Each scenario is what someone who can write to Redis, or listen on its port, could
try: a poisoned entry, a pre-poisoned key, a fake Redis answering ``0`` while the
real one is down, entries signed with another secret. Each time EICAR is scanned
and answered as infected through every front: Sophie (``1:``), the clamd front
(``FOUND``) and the milter (reject). A Redis with ACL and TLS works; a wrong
password or an untrusted certificate costs a scan, never an answer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand.cache.signing import Signer
from tests.conftest import EICAR, Daemon, DaemonFactory
from tests.farm.conftest import Redis, write_secret
from tests.milter.mail import message
from tests.milter.miltertest import MilterScript, needs_miltertest

pytestmark = [needs_miltertest, pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server (Debian package) not installed")]

SECRET = "farm-secret-0123456789abcdef"
EICAR_KEY = hashlib.sha256(EICAR).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resp(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class TcpRedis:
    """A redis-server on 127.0.0.1:<port> (optionally TLS-only, with ACL users)."""

    def __init__(self, directory: Path, port: int, *args: str,
                 tls: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None
                 ) -> None:
        self.dir, self.port, self.tls, self.auth = directory, port, tls, auth
        listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
        log = open(directory / f"redis-{port}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), *args], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command(b"PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError((directory / f"redis-{port}.log").read_text())

    def command(self, *words: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
            s: socket.socket = (self.tls.wrap_socket(raw, server_hostname="127.0.0.1")
                                if self.tls else raw)
            if self.auth:
                s.sendall(resp(b"AUTH", self.auth[0].encode(), self.auth[1].encode()))
                assert s.recv(100).startswith(b"+OK")
            s.sendall(resp(*words))
            return s.recv(65536)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class FakeRedis:
    """Whoever listens on Redis's port while it is down: ``0`` to every GET, ``+OK``
    to everything else (CLIENT SETINFO, SET, ...) but HELLO (unknown, as to Redis 5)."""

    def __init__(self, port: int) -> None:
        self.gets = 0
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.server.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            conn.settimeout(5)
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while (words := _parse(buf)) is not None:
                    command, buf = words
                    verb = command[0].upper() if command else b""
                    if verb == b"GET":
                        self.gets += 1
                        conn.sendall(b"$1\r\n0\r\n")
                    elif verb == b"HELLO":  # as an old Redis: the client falls back to RESP2
                        conn.sendall(b"-ERR unknown command 'HELLO'\r\n")
                    else:
                        conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.server.close()


def _parse(buf: bytes) -> tuple[list[bytes], bytes] | None:
    """One RESP array of bulk strings off the front of ``buf``, or None if incomplete."""
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None
    head, rest = buf.split(b"\r\n", 1)
    words = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None
        size, rest = rest.split(b"\r\n", 1)
        n = int(size[1:])
        if len(rest) < n + 2:
            return None
        words.append(rest[:n])
        rest = rest[n + 2:]
    return words, rest


# -- a daemon with all three fronts -----------------------------------------------------

def config(url: str, secret: Path, extra: str = "") -> str:
    return (f'[cache]\nbackend = "redis"\nredis_url = "{url}"\nsecret_file = "{secret}"\n'
            f"redis_timeout = 0.5\nredis_retry = 0.2\nmin_part_bytes = 0\n{extra}")


def start(scand_daemon: DaemonFactory, workdir: Path, cfg: str) -> Daemon:
    n = len(list(workdir.glob("scand*.toml")))
    return scand_daemon("--clamd-socket", str(workdir / f"c{n}"),
                        "--milter-socket", str(workdir / f"m{n}"), config=cfg, workers=1)


def files(workdir: Path) -> tuple[str, str]:
    (workdir / "eicar.com").write_bytes(EICAR)
    (workdir / "clean.txt").write_bytes(b"a harmless file, cached as clean\n" * 40)
    return str(workdir / "eicar.com"), str(workdir / "clean.txt")


def every_front_finds_eicar(d: Daemon, eicar: str, tag: str) -> None:
    """Sophie ``1:``, the clamd front ``FOUND``, the milter a reject."""
    assert d.ask(f"{eicar}\n".encode()) == b"1:Eicar-Test-Signature\n"
    n = d.socket.rsplit("/s", 1)[1]
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(d.workdir / f"c{n}"))
        c.sendall(f"nSCAN {eicar}\n".encode())
        reply = b""
        while chunk := c.recv(4096):
            reply += chunk
    assert reply == f"{eicar}: Eicar-Test-Signature FOUND\n".encode(), reply
    mdir = d.workdir / f"milter-{tag}"
    mdir.mkdir()
    script = MilterScript(mdir, str(d.workdir / f"m{n}"))
    script.add_message("eicar", *message(tag, "eicar.com", EICAR))
    out = script.run('c = connect()\nsend(c, "Q1", "eicar.h", "eicar.b"); result("eicar", c)\n')
    assert out["eicar"] == "y", out  # reject


def cache_counts(d: Daemon) -> dict[str, int]:
    c = d.stats()["cache"]
    assert isinstance(c, dict)
    return {k: int(v) for k, v in c.items()}


def keys(r: Redis) -> list[bytes]:
    reply = r.command(b"KEYS", b"*")
    return [line for line in reply.split(b"\r\n")[2::2] if line]


def get(r: Redis, key: bytes) -> bytes:
    head, _, rest = r.command(b"GET", key).partition(b"\r\n")
    return rest[:int(head[1:])]


def prefix_of(r: Redis) -> bytes:
    """``scand:v1:<generation>:<policy>:``, as anyone who can read Redis can see it."""
    return keys(r)[0].rsplit(b":", 1)[0] + b":"


def bad_tag_lines(d: Daemon) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in d.log().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "cache_bad_tag"]


@pytest.fixture
def secret(short_tmp: Path) -> Path:
    return write_secret(short_tmp, SECRET)


def test_a_poisoned_entry_is_a_miss(scand_daemon: DaemonFactory, short_tmp: Path,
                                    redis_server: Redis, secret: Path) -> None:
    d = start(scand_daemon, short_tmp, config(redis_server.url, secret))
    eicar, clean = files(short_tmp)
    assert d.ask(f"{eicar}\n".encode()) == b"1:Eicar-Test-Signature\n"
    (eicar_key,) = keys(redis_server)
    assert EICAR_KEY.encode() not in eicar_key  # names are keyed: not sha256(part)
    assert d.ask(f"{clean}\n".encode()) == b"0\n"
    (clean_key,) = set(keys(redis_server)) - {eicar_key}
    # A valid clean entry moved onto EICAR's key: its tag covers the key.
    redis_server.command(b"SET", eicar_key, get(redis_server, clean_key))
    every_front_finds_eicar(d, eicar, "moved")
    assert cache_counts(d)["bad_tags"] >= 1
    # A plain "0" (and one with a made-up tag) on every key.
    for key in keys(redis_server):
        redis_server.command(b"SET", key, b"0")
    every_front_finds_eicar(d, eicar, "zero")
    for key in keys(redis_server):
        redis_server.command(b"SET", key, b"\0" * 16 + b"0")
    every_front_finds_eicar(d, eicar, "tagged")
    assert d.ask(f"{clean}\n".encode()) == b"0\n"  # scanned again, still clean
    counts = cache_counts(d)
    assert counts["bad_tags"] >= 3 and counts["misses"] >= counts["bad_tags"], counts
    # Logged, rate-limited: one line for the whole run (one worker, within a minute).
    lines = bad_tag_lines(d)
    assert len(lines) == 1 and lines[0]["count"] == 1, lines


def test_a_pre_poisoned_key_is_never_even_read(scand_daemon: DaemonFactory, short_tmp: Path,
                                               redis_server: Redis, secret: Path) -> None:
    d = start(scand_daemon, short_tmp, config(redis_server.url, secret))
    eicar, clean = files(short_tmp)
    assert d.ask(f"{clean}\n".encode()) == b"0\n"
    prefix = prefix_of(redis_server)
    # What the attack on the old scheme was: SET <prefix><sha256(part)> 0, before the
    # part ever arrives (and the same for its base64 body and whole-file forms).
    for suffix in (EICAR_KEY, "b64:" + EICAR_KEY):
        redis_server.command(b"SET", prefix + suffix.encode(), b"0")
    every_front_finds_eicar(d, eicar, "pre")
    assert cache_counts(d)["bad_tags"] == 0  # the planted keys were not even addressed


def test_a_fake_redis_answering_zero_on_its_port(scand_daemon: DaemonFactory,
                                                 short_tmp: Path, secret: Path) -> None:
    port = free_port()
    real = TcpRedis(short_tmp, port)
    d = start(scand_daemon, short_tmp, config(f"redis://127.0.0.1:{port}", secret))
    eicar, clean = files(short_tmp)
    try:
        assert d.ask(f"{eicar}\n".encode()) == b"1:Eicar-Test-Signature\n"
        assert d.ask(f"{clean}\n".encode()) == b"0\n"
    finally:
        real.stop()  # Redis goes down; an unprivileged user takes its port
    fake = FakeRedis(port)
    try:
        # The worker finds its connection dead (a scan without the cache), rests for
        # redis_retry, then connects again: to the fake.
        assert d.ask(f"{clean}\n".encode()) == b"0\n"
        time.sleep(0.5)
        every_front_finds_eicar(d, eicar, "fake")
        assert d.ask(f"{clean}\n".encode()) == b"0\n"
        assert fake.gets >= 3, fake.gets
        assert cache_counts(d)["bad_tags"] >= 3
    finally:
        fake.close()


def test_entries_signed_with_another_secret(scand_daemon: DaemonFactory, short_tmp: Path,
                                            redis_server: Redis, secret: Path) -> None:
    d = start(scand_daemon, short_tmp, config(redis_server.url, secret))
    eicar, clean = files(short_tmp)
    assert d.ask(f"{clean}\n".encode()) == b"0\n"
    prefix = prefix_of(redis_server).decode()
    wrong, right = Signer(b"another-farm-secret-0123456789"), Signer(SECRET.encode())
    for names in (wrong, right):  # under the other secret's name, and under ours
        key = prefix + names.name(EICAR_KEY)
        redis_server.command(b"SET", key.encode(), wrong.seal(key, b"0"))
    every_front_finds_eicar(d, eicar, "wrong")
    assert cache_counts(d)["bad_tags"] >= 1


# -- Redis with ACL and TLS ---------------------------------------------------------------

@pytest.fixture
def certs(short_tmp: Path) -> Path:
    d = short_tmp / "pki"
    d.mkdir()

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "rogue"):
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
             "-out", f"{ca}.crt", "-subj", f"/CN=scand test {ca}", "-days", "2")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.crt", "-days", "2", "-extfile", "ext")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out",
         "client.csr", "-subj", "/CN=scand")
    ossl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.crt", "-days", "2")
    return d


@pytest.fixture
def tls_redis(short_tmp: Path, certs: Path) -> Iterator[TcpRedis]:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    r = TcpRedis(short_tmp, free_port(), "--tls-cert-file", str(certs / "srv.crt"),
                 "--tls-key-file", str(certs / "srv.key"),
                 "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "no",
                 "--user", "default", "off", "--user", "scand", "on", ">pw-0123456789",
                 "~scand:*", "+@all", tls=ctx, auth=("scand", "pw-0123456789"))
    yield r
    r.stop()


def tls_config(r: TcpRedis, secret: Path, password: Path, ca: Path) -> str:
    return config(f"rediss://127.0.0.1:{r.port}", secret,
                  f'redis_username = "scand"\nredis_password_file = "{password}"\n'
                  f'redis_ca_file = "{ca}"\n')


def test_redis_with_acl_and_tls(scand_daemon: DaemonFactory, short_tmp: Path,
                                tls_redis: TcpRedis, certs: Path, secret: Path) -> None:
    password = write_secret(short_tmp, "pw-0123456789", "redis.pw")
    d = start(scand_daemon, short_tmp, tls_config(tls_redis, secret, password,
                                                  certs / "ca.crt"))
    eicar, clean = files(short_tmp)
    for _ in range(2):
        assert d.ask(f"{clean}\n".encode()) == b"0\n"
    every_front_finds_eicar(d, eicar, "tls")
    counts = cache_counts(d)
    assert counts["hits"] >= 2 and counts["bad_tags"] == 0, counts  # it works: hits
    assert b"scand:v1:" in tls_redis.command(b"KEYS", b"*")
    assert "cache_unavailable" not in d.log()


@pytest.mark.parametrize("what", ["wrong password", "untrusted certificate"])
def test_wrong_password_or_untrusted_certificate_costs_a_scan(
        scand_daemon: DaemonFactory, short_tmp: Path, tls_redis: TcpRedis, certs: Path,
        secret: Path, what: str) -> None:
    good = write_secret(short_tmp, "pw-0123456789", "redis.pw")
    # Entries a good host stored: the clean file's, and (under our secret) EICAR's "0".
    d0 = start(scand_daemon, short_tmp, tls_config(tls_redis, secret, good, certs / "ca.crt"))
    eicar, clean = files(short_tmp)
    assert d0.ask(f"{clean}\n".encode()) == b"0\n"
    d0.stop()
    if what == "wrong password":
        cfg = tls_config(tls_redis, secret, write_secret(short_tmp, "not-the-password",
                                                         "bad.pw"), certs / "ca.crt")
        error = "invalid username-password"
    else:
        cfg = tls_config(tls_redis, secret, good, certs / "rogue.crt")
        error = "certificate verify failed"
    d = start(scand_daemon, short_tmp, cfg)
    for _ in range(2):
        assert d.ask(f"{clean}\n".encode()) == b"0\n"
    every_front_finds_eicar(d, eicar, "bad")
    counts = cache_counts(d)
    assert counts["hits"] == 0 and counts["bad_tags"] == 0, counts  # every part scanned
    unavailable = [x for x in d.log().splitlines() if "cache_unavailable" in x]
    assert unavailable and error in unavailable[0], unavailable[:1]


def test_redis_requiring_client_certificates(scand_daemon: DaemonFactory, short_tmp: Path,
                                             certs: Path, secret: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    r = TcpRedis(short_tmp, free_port(), "--tls-cert-file", str(certs / "srv.crt"),
                 "--tls-key-file", str(certs / "srv.key"),
                 "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes",
                 tls=ctx)
    try:
        url = f"rediss://127.0.0.1:{r.port}"
        base = f'redis_ca_file = "{certs / "ca.crt"}"\n'
        with_cert = base + (f'redis_cert_file = "{certs / "client.crt"}"\n'
                            f'redis_key_file = "{certs / "client.key"}"\n')
        eicar, clean = files(short_tmp)
        for extra, hits in ((with_cert, True), (base, False)):
            d = start(scand_daemon, short_tmp, config(url, secret, extra))
            for _ in range(2):
                assert d.ask(f"{clean}\n".encode()) == b"0\n"
            assert d.ask(f"{eicar}\n".encode()) == b"1:Eicar-Test-Signature\n"
            assert (cache_counts(d)["hits"] > 0) is hits, d.log()[-2000:]
            d.stop()
    finally:
        r.stop()

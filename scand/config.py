"""Configuration: TOML into frozen dataclasses, loudly.

Every key is declared once, as a dataclass field, with its default. Unknown
sections, unknown keys and values of the wrong type or range are errors that
name the key (``pool.workers: must be >= 1, got 0``). Stdlib only.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import stat
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scand.engines.registry import REGISTRY

MiB = 1024 * 1024
# Default workers per CPU with the clamd engine (its workers wait on clamd's threads)
# and the clamav engine (see Config.worker_count).
# Measured (bench/profile.py, tiny set, 1,500 messages, 16 clients, 2 CPUs shared with
# other jobs): server CPU per message 5.31 ms with 2 workers, 5.60 / 4.65 with 4,
# 6.03 / 5.34 with 8; throughput with 4 as with 8 (54.8 vs 56.5, 123 vs 77 msgs/s).
CLAMD_WORKERS_PER_CPU = 2


class ConfigError(ValueError):
    """A bad config file, key or value. The message names the key."""


def default_socket_path() -> str:
    """``/var/run/sophie`` when its directory is writable, else a per-user path.

    The per-user path is ``$XDG_RUNTIME_DIR/scand/sophie`` when that variable is
    set, else ``/tmp/scand-<uid>/sophie``.
    """
    if os.access("/var/run", os.W_OK):
        return "/var/run/sophie"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "scand" if runtime else Path(f"/tmp/scand-{os.getuid()}")
    return str(base / "sophie")


@dataclass(frozen=True)
class ServerConfig:
    socket: str = ""  # "" = default_socket_path()
    socket_mode: int = 0o660
    socket_group: str = ""  # name or number; "" = the daemon's own group
    user: str = ""  # started as root: drop to this user before accepting ("" = stay)
    group: str = ""  # with user: this group ("" = the user's primary group)
    idle_timeout: float = 300.0
    request_timeout: float = 30.0
    shutdown_grace: float = 30.0
    max_stream_bytes: int = 25 * MiB
    max_connections: int = 256
    allowed_roots: tuple[str, ...] = ()  # empty = every absolute path is allowed
    # Remote scanning (scand.fronts.sophie over TCP): Sophie STREAM, "host:port" each.
    tcp: tuple[str, ...] = ()  # plain TCP listeners
    tls: tuple[str, ...] = ()  # TLS listeners (need tls_cert and tls_key)
    tcp_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # peers (CIDR) for both
    tls_cert: str = ""  # PEM certificate chain
    tls_key: str = ""  # PEM private key
    # Request bytes held in the daemon for all connections of every front together
    # (STREAM/INSTREAM bodies, FILDES reads, milter buffers, TLS handshakes);
    # 0 = clamd_front.stream_memory_mb if changed, else 16 x max_stream_bytes.
    memory_budget_mb: int = 0


@dataclass(frozen=True)
class EngineConfig:
    # auto: clamav when libclamav loads and the signature directory holds a ClamAV
    # database, else builtin (scand.engines.auto; decided once at start)
    name: str = "auto"
    # "" = /var/lib/clamav for auto/clamav/clamd when it holds a database, else the
    # engine's own default (builtin: EICAR only)
    signatures: str = ""
    self_check: float = 600.0  # seconds between checks of the signature directory; 0 = off
    self_check_settle: float = 5.0  # a changed directory must hold still this long


@dataclass(frozen=True)
class LimitsConfig:
    max_file_size: int = 64 * MiB
    max_files: int = 10_000
    max_depth: int = 32  # directory levels of a scanned path (not nesting: content.max_depth)


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 0  # 0 = number of CPUs
    queue_size: int = 64
    queue_wait: float = 10.0
    scan_timeout: float = 60.0
    memory_cap_mb: int = 512
    recycle_rss_mb: int = 128
    hard_rss_mb: int = 512
    max_jobs: int = 5000
    max_jobs_jitter: int = 500
    min_lifetime: float = 10.0
    cancel_grace: float = 0.5


@dataclass(frozen=True)
class ContentConfig:
    """Limits of the MIME/archive walker (each hit is a -1:<reason>, never 0)."""

    max_depth: int = 16  # nesting of containers: message/rfc822, zip in zip, ... (not dirs)
    max_parts: int = 5000  # parts and archive members in one object
    max_bytes: int = 256 * MiB  # total decoded bytes across all parts
    max_ratio: int = 250  # decoded/encoded bytes of one archive member or stream
    encrypted: str = "unchecked"  # unchecked (-1:encrypted) | banned (1:Banned.Encrypted...)


@dataclass(frozen=True)
class PolicyConfig:
    """Banned attachments (amavisd-like defaults; see examples/scand.toml)."""

    enabled: bool = True
    extensions: tuple[str, ...] = (
        "exe", "vbs", "pif", "scr", "bat", "cmd", "com", "cpl", "dll",
        "hta", "js", "jse", "lnk", "msi", "reg", "wsf", "wsh", "vbe", "shs",
        "shb", "msc", "msp", "mst", "ade", "adp", "chm", "hlp", "ins", "isp",
        "inf", "sct", "ps1", "vb", "url", "crt", "job", "scf", "cab",
    )
    mime_types: tuple[str, ...] = (
        "application/x-msdownload", "application/x-msdos-program", "application/hta",
        # A fragment cannot be judged alone, and clients reassemble it silently.
        "message/partial",
    )
    double_extension: bool = True
    clsid: bool = True
    archives: bool = True  # apply the rules to names inside archives too
    raw_names: bool = False  # the seed admin's trick: name.ext phrases anywhere in the raw mail
    # Per-rule exceptions: glob patterns (case-insensitive) on the part name.
    extension_exceptions: tuple[str, ...] = ()
    double_extension_exceptions: tuple[str, ...] = ()
    mime_type_exceptions: tuple[str, ...] = ()
    clsid_exceptions: tuple[str, ...] = ()
    raw_name_exceptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClamdConfig:
    # External clamd sockets: "/path" (Unix) or "host:port" (TCP). Empty = managed:
    # scand starts and supervises its own clamd on the signature directory.
    sockets: tuple[str, ...] = ()
    transfer: str = "auto"  # auto | stream (INSTREAM) | path (SCAN) | fildes (FILDES, Unix only)
    chunk_size: int = 1 * MiB
    timeout: float = 30.0  # one true deadline per clamd request
    retries: int = 2  # extra sockets tried after a connection failure
    # managed mode only:
    binary: str = "clamd"
    run_dir: str = ""  # "" = <socket dir>/scand-clamd
    max_file_size_mb: int = 64
    max_scan_size_mb: int = 256
    stream_max_length_mb: int = 64
    max_recursion: int = 17
    max_files: int = 10_000
    max_threads: int = 8
    # ClamAV's clean cache makes a 42.zip-style bomb come back clean (1.4.6), so
    # the managed clamd runs without it unless this says otherwise.
    disable_cache: bool = True
    start_timeout: float = 120.0
    rss_limit_mb: int = 0  # 0 = never; else switch to a fresh clamd past this growth
    rss_check_interval: float = 5.0
    min_switch_interval: float = 60.0


@dataclass(frozen=True)
class ClamdFrontConfig:
    """scand's clamd-protocol listener (off unless ``socket`` or ``tcp`` is set)."""

    socket: str = ""  # Unix socket path; "" = no Unix clamd listener
    socket_mode: int = 0o660
    socket_group: str = ""  # name or number; "" = the daemon's own group
    # rspamd and other clients that know only OK/FOUND pass anything else: for them,
    # answer "not scanned" as FOUND "Scand.Unchecked.<reason>" (per listener).
    unchecked_as_found: bool = False
    tcp: tuple[str, ...] = ()  # "host:port" (IPv6 as "[::1]:3310"); empty = no TCP
    tcp_allow: tuple[str, ...] = ()  # client networks (CIDR); required with tcp
    tcp_unchecked_as_found: bool = False
    tls_cert: str = ""  # PEM certificate chain: TCP speaks TLS only (plain is refused)
    tls_key: str = ""  # PEM private key for tls_cert
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed
    allow_shutdown: bool = False  # SHUTDOWN/QUIT stop the daemon (clamd's default is on)
    allow_allmatch: bool = True  # AllowAllMatchScan
    session_requests: int = 16  # IDSESSION requests in progress per connection
    # INSTREAM data held in the daemon for all connections together (each is also
    # capped by server.max_stream_bytes); a chunk past it gets "stream: busy ERROR".
    stream_memory_mb: int = 512  # old name of server.memory_budget_mb (still accepted)
    # Over TCP/TLS, also answer SCAN/CONTSCAN/MULTISCAN/ALLMATCHSCAN: lets every allowed
    # peer make this host read (and probe) the files it names. Off: INSTREAM and
    # PING/VERSION/VERSIONCOMMANDS/STATS only.
    tcp_allow_paths: bool = False

    def __post_init__(self) -> None:
        if self.tcp and not self.tcp_allow:
            raise ConfigError("clamd_front.tcp_allow: required when clamd_front.tcp is set "
                              "(clamd has no access control; scand does not repeat that)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("clamd_front.tls_key: tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("clamd_front.tls_client_ca: needs tls_cert and tls_key")


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint (scand.metrics). Off unless ``listen`` is set."""

    listen: str = ""  # "host:port" (e.g. "127.0.0.1:9117"); "" = no endpoint
    # Peers allowed to scrape (CIDR); anyone else is closed before a byte is read.
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class CacheConfig:
    """The verdict cache (scand.cache): definitive per-part verdicts by content digest."""

    backend: str = "memory"  # none | memory (per worker) | redis (shared)
    ttl: float = 3600.0  # seconds an entry stays usable
    max_entries: int = 100_000  # memory backend: entries in the daemon's shared table
    min_part_bytes: int = 1024  # smaller decoded parts are scanned, not looked up
    # "unix:///run/redis/redis.sock", "redis://host:port", "rediss://host:port" (TLS),
    # or a Sentinel service: "redis+sentinel://host1:26379,host2:26379,host3:26379/mymaster"
    redis_url: str = ""
    redis_timeout: float = 0.05  # one lookup or store, then scan without the cache
    redis_retry: float = 1.0  # after a Redis failure, skip Redis for this long
    redis_prefix: str = "scand:v1:"
    # The farm secret (required with redis): every stored value carries a MAC over its
    # key and value, and keys are keyed hashes (docs/SECURITY.md). A file of one line
    # (>= 16 bytes), readable by its owner only.
    secret_file: str = ""
    redis_username: str = ""  # Redis ACL user ("" = the default user)
    redis_password_file: str = ""  # the Redis password (AUTH), one line, owner-only file
    redis_ca_file: str = ""  # rediss://: PEM CA bundle the server must chain to ("" = system)
    redis_cert_file: str = ""  # rediss://: client certificate (PEM), with redis_key_file
    redis_key_file: str = ""  # rediss://: the client certificate's private key (PEM)
    # Read from the files above when the config is built (never from TOML, never shown).
    secret: bytes = field(default=b"", init=False, repr=False)
    redis_password: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend != "redis":
            return
        if importlib.util.find_spec("redis") is None:
            raise ConfigError('cache.backend: "redis" needs the redis package: '
                              "pip install 'scand[redis]'")
        if not self.secret_file:
            raise ConfigError('cache.secret_file: required with cache.backend = "redis" '
                              "(a file of one line: e.g. openssl rand -hex 32)")
        secret = read_private_file("cache.secret_file", self.secret_file)
        if len(secret) < MIN_SECRET:
            raise ConfigError(f"cache.secret_file: {self.secret_file}: {len(secret)} bytes; "
                              f"at least {MIN_SECRET} (e.g. openssl rand -hex 32)")
        object.__setattr__(self, "secret", secret)
        if self.redis_password_file:
            password = read_private_file("cache.redis_password_file", self.redis_password_file)
            object.__setattr__(self, "redis_password", password.decode("utf-8", "replace"))
        tls = self.redis_url.startswith("rediss://")
        for key in ("redis_ca_file", "redis_cert_file", "redis_key_file"):
            path = getattr(self, key)
            if path and not tls:
                raise ConfigError(f"cache.{key}: only with a rediss:// redis_url")
            if path and not os.access(path, os.R_OK):
                raise ConfigError(f"cache.{key}: {path}: cannot be read")
        if bool(self.redis_cert_file) != bool(self.redis_key_file):
            raise ConfigError("cache.redis_key_file: redis_cert_file and redis_key_file go "
                              "together")


# Shortest farm secret accepted (bytes): 16 random bytes, or 32 hex digits of them.
MIN_SECRET = 16


def read_private_file(key: str, path: str) -> bytes:
    """The first line of a secret file, which only its owner may read or change."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{key}: {path}: not a regular file")
            if st.st_mode & 0o077:
                raise ConfigError(f"{key}: {path}: mode {stat.S_IMODE(st.st_mode):04o} lets "
                                  "group or others read or change it; chmod 600 it")
            lines = fh.read(4096).splitlines()
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot read: {exc.strerror}") from exc
    value = lines[0].strip() if lines else b""
    if not value:
        raise ConfigError(f"{key}: {path}: is empty")
    return value


@dataclass(frozen=True)
class ClamavConfig:
    """The in-process libclamav engine (``--engine clamav``)."""

    library: str = ""  # "" = the system's libclamav (libclamav.so.12, Debian's libclamav12)
    # "" = /dev/shm/scand-clamav-<uid> when /dev/shm is a large enough tmpfs, else
    # $TMPDIR/scand-clamav-<uid>; each worker gets <tmp_dir>/worker-<pid>
    tmp_dir: str = ""
    alert_encrypted: bool = True  # encrypted archives -> -1:encrypted (libclamav's heuristic)
    # Who parses mail: "scand" (the walker; libclamav gets its decoded parts, text parts
    # in a minimal message for its phishing checks), "libclamav" (its own MIME parser),
    # "auto" (= scand: scand.engines.clamav.engine.mail_parser)
    mail_parser: str = "auto"


@dataclass(frozen=True)
class MilterConfig:
    """The milter front (scand/milter/): Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER."""

    socket: str = ""  # Unix socket path; "" = no Unix milter socket
    socket_mode: int = 0o660
    socket_group: str = ""  # name or number; "" = the daemon's own group
    inet: str = ""  # "127.0.0.1:7357"; "" = none. Not loopback: needs inet_allow
    inet_allow: tuple[str, ...] = ()  # client addresses/networks besides loopback
    spill_bytes: int = 1 * MiB  # kept in memory up to this, then spooled to a file
    spool_dir: str = ""  # "" = a private temporary directory
    max_message_bytes: int = 0  # 0 = limits.max_file_size; larger = tempfail
    infected_action: str = "reject"  # reject | quarantine | discard | accept
    reject_reply: str = "554 5.7.1 Message rejected: {name}"
    tempfail_reply: str = "451 4.7.1 Message not scanned ({reason}), try again later"
    add_headers: bool = False  # X-Virus-Scanned / X-Virus-Status on mail that passes
    progress_interval: float = 30.0  # seconds between "progress" while a scan runs
    idle_timeout: float = 3600.0  # close a milter connection idle this long


@dataclass(frozen=True)
class FarmConfig:
    """Behind a load balancer (docs/FARM.md): PROXY protocol v2 and HAProxy's agent-check."""

    # Balancers (CIDR) on the TCP listeners: their PROXY v2 header is required and the
    # allow-lists apply to the client it names; a PROXY header from anyone else is
    # refused. Empty = off (no header read or accepted).
    proxy_from: tuple[str, ...] = ()
    agent: str = ""  # "host:port" of the agent-check listener; "" = off
    agent_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # who may ask it (CIDR)
    # After SIGTERM, answer "drain" to the agent this long before closing the
    # listeners, so the balancer stops sending first (a few agent-inter).
    drain_delay: float = 0.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto | json | console


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    clamd: ClamdConfig = field(default_factory=ClamdConfig)
    clamd_front: ClamdFrontConfig = field(default_factory=ClamdFrontConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    clamav: ClamavConfig = field(default_factory=ClamavConfig)
    milter: MilterConfig = field(default_factory=MilterConfig)
    farm: FarmConfig = field(default_factory=FarmConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def socket_path(self) -> str:
        return self.server.socket or default_socket_path()

    @property
    def worker_count(self) -> int:
        """``pool.workers``, or by default one per CPU for the built-in engine; two per
        CPU for clamd, whose workers mostly wait on clamd, and for clamav: measured on
        2 CPUs shared with other jobs, 4 workers cost 5.94 ms of CPU per message
        against 5.67 with 2 (+5 %) but gave 36.4 against 17.9 msgs/s: on a loaded
        host each worker is one share of the scheduler, and clamd runs 8 threads
        (on a quiet host 2, 3 and 4 gave the same throughput)."""
        per_cpu = CLAMD_WORKERS_PER_CPU if self.engine.name in ("clamd", "clamav") else 1
        return self.pool.workers or per_cpu * (os.cpu_count() or 1)


# Extra checks beyond the type, keyed "section.key"; each returns an error or None.
def _at_least(n: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be >= {n}, got {v}"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def _absolute_paths(v: tuple[str, ...]) -> str | None:
    bad = [p for p in v if not p.startswith("/")]
    return f"must be absolute paths, got {bad[0]!r}" if bad else None


def _networks(v: tuple[str, ...]) -> str | None:
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            return f"not a network: {net!r}"
    return None


def _host_port(v: str) -> bool:
    host, sep, port = v.rpartition(":")
    return bool(sep and host and port.isdigit() and int(port) < 65536)


def _network(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return True


def _sentinel_url(v: str) -> str | None:
    """``redis+sentinel://host:port[,host:port...]/master`` (scand.cache.connect)."""
    hosts, _, master = v.removeprefix("redis+sentinel://").partition("/")
    if not master or "/" in master or not all(_host_port(h) for h in hosts.split(",")):
        return f"must be redis+sentinel://host:port[,host:port...]/master, got {v!r}"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "server.socket_mode": lambda v: None if 0 <= v <= 0o777 else f"not a file mode: {v:o}",
    "server.idle_timeout": _at_least(0.1),
    "server.request_timeout": _at_least(0.1),
    "server.shutdown_grace": _at_least(0),
    "server.max_stream_bytes": _at_least(1),
    "server.max_connections": _at_least(1),
    "server.allowed_roots": _absolute_paths,
    "engine.name": lambda v: None if v in REGISTRY or v == "auto" else (
        f"unknown engine {v!r} (known: auto, {', '.join(REGISTRY)})"
    ),
    "engine.self_check": _at_least(0),
    "engine.self_check_settle": _at_least(0),
    "limits.max_file_size": _at_least(1),
    "limits.max_files": _at_least(1),
    "limits.max_depth": _at_least(1),
    "pool.workers": _at_least(0),
    "pool.queue_size": _at_least(0),
    "pool.queue_wait": _at_least(0),
    "pool.scan_timeout": _at_least(0.1),
    "pool.memory_cap_mb": _at_least(32),
    "pool.recycle_rss_mb": _at_least(1),
    "pool.hard_rss_mb": _at_least(1),
    "pool.max_jobs": _at_least(1),
    "pool.max_jobs_jitter": _at_least(0),
    "pool.min_lifetime": _at_least(0),
    "pool.cancel_grace": _at_least(0),
    "content.max_depth": _at_least(1),
    "content.max_parts": _at_least(1),
    "content.max_bytes": _at_least(1024),
    "content.max_ratio": _at_least(2),
    "content.encrypted": _one_of("unchecked", "banned"),
    "policy.extensions": lambda v: next(
        (f"extensions are given without the dot, got {e!r}" for e in v if "." in e), None),
    "clamd.sockets": lambda v: next(
        (f"not a Unix path or host:port: {s!r}" for s in v
         if not (s.startswith("/") or s.rpartition(":")[2].isdigit())), None),
    "clamd.transfer": _one_of("auto", "stream", "path", "fildes"),
    "clamd.chunk_size": _at_least(1024),
    "clamd.timeout": _at_least(0.1),
    "clamd.retries": _at_least(0),
    "clamd.max_file_size_mb": _at_least(1),
    "clamd.max_scan_size_mb": _at_least(1),
    "clamd.stream_max_length_mb": _at_least(1),
    "clamd.max_recursion": _at_least(1),
    "clamd.max_files": _at_least(1),
    "clamd.max_threads": _at_least(1),
    "clamd.start_timeout": _at_least(1),
    "clamd.rss_limit_mb": _at_least(0),
    "clamd.rss_check_interval": _at_least(0.1),
    "clamd.min_switch_interval": _at_least(0),
    "clamd_front.socket_mode": lambda v: None if 0 <= v <= 0o777 else f"not a file mode: {v:o}",
    "clamd_front.tcp": lambda v: next(
        (f"not host:port: {a!r}" for a in v if not a.rpartition(":")[2].isdigit()), None),
    "clamd_front.tcp_allow": _networks,
    "clamd_front.session_requests": _at_least(1),
    "clamd_front.stream_memory_mb": _at_least(1),
    "server.memory_budget_mb": _at_least(0),
    "server.tcp": lambda v: next((f"must be host:port, got {a!r}" for a in v
                                  if not _host_port(a)), None),
    "server.tls": lambda v: next((f"must be host:port, got {a!r}" for a in v
                                  if not _host_port(a)), None),
    "server.tcp_allow": lambda v: next((f"not a network: {n!r}" for n in v
                                        if not _network(n)), None),
    "metrics.listen": lambda v: None if not v or _host_port(v) else (
        f"must be host:port, got {v!r}"),
    "metrics.allow": lambda v: next((f"not a network: {n!r}" for n in v if not _network(n)), None),
    "cache.backend": _one_of("none", "memory", "redis"),
    "cache.ttl": _at_least(1),
    "cache.max_entries": _at_least(1),
    "cache.min_part_bytes": _at_least(0),
    "cache.redis_url": lambda v: _sentinel_url(v) if v.startswith("redis+sentinel://") else (
        None if not v or v.startswith(("unix:///", "redis://", "rediss://")) else
        f"must start with unix:///, redis://, rediss:// or redis+sentinel://, got {v!r}"),
    "cache.redis_timeout": _at_least(0.001),
    "cache.redis_retry": _at_least(0),
    "clamav.mail_parser": _one_of("auto", "scand", "libclamav"),
    "clamav.tmp_dir": lambda v: None if v == "" or v.startswith("/") else (
        f"must be an absolute path, got {v!r}"),
    "milter.socket_mode": lambda v: None if 0 <= v <= 0o777 else f"not a file mode: {v:o}",
    "milter.socket": lambda v: None if v == "" or v.startswith("/") else "must be absolute",
    "milter.spool_dir": lambda v: None if v == "" or v.startswith("/") else "must be absolute",
    "milter.inet": lambda v: None if v == "" or v.rpartition(":")[2].isdigit() else (
        f"must be host:port, got {v!r}"),
    "milter.inet_allow": _networks,
    "milter.spill_bytes": _at_least(1024),
    "milter.max_message_bytes": _at_least(0),
    "milter.infected_action": _one_of("reject", "quarantine", "discard", "accept"),
    "milter.reject_reply": lambda v: None if v[:1] == "5" and v[3:4] == " " and v[:3].isdigit()
    else f"must start with a 5xx code and a space, got {v!r}",
    "milter.tempfail_reply": lambda v: None if v[:1] == "4" and v[3:4] == " " and v[:3].isdigit()
    else f"must start with a 4xx code and a space, got {v!r}",
    "milter.progress_interval": _at_least(0),
    "milter.idle_timeout": _at_least(1),
    "farm.proxy_from": _networks,
    "farm.agent": lambda v: None if not v or _host_port(v) else f"must be host:port, got {v!r}",
    "farm.agent_allow": _networks,
    "farm.drain_delay": _at_least(0),
    "log.level": _one_of("debug", "info", "warning", "error"),
    "log.format": _one_of("auto", "json", "console"),
}


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against the field's type hint; allow int for float, "0660" modes."""
    if key.endswith(".socket_mode") and isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ConfigError(f"{key}: not an octal mode: {value!r}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typing.get_origin(hint) is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{key}: must be a list of {item.__name__}, got {value!r}")
        return tuple(value)
    if isinstance(hint, type) and (not isinstance(value, hint) or isinstance(value, bool) != (
        hint is bool
    )):
        raise ConfigError(f"{key}: must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build_section(name: str, cls: type[Any], raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(f"{full}: unknown key (known: {', '.join(sorted(fields))})")
        values[key] = _coerce(full, hints[key], value)
        check = _CHECKS.get(full)
        problem = check(values[key]) if check else None
        if problem:
            raise ConfigError(f"{full}: {problem}")
    return cls(**values)


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from parsed TOML, naming the first bad key."""
    hints = typing.get_type_hints(Config)
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(Config))
            raise ConfigError(f"{name}: unknown section (known: {known})")
        sections[name] = _build_section(name, hints[name], raw)
    config = Config(**sections)
    if config.server.tls and not (config.server.tls_cert and config.server.tls_key):
        raise ConfigError("server.tls: needs server.tls_cert and server.tls_key")
    if config.cache.backend == "redis" and not config.cache.redis_url:
        raise ConfigError('cache.redis_url: required with cache.backend = "redis"')
    return config


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return from_mapping(data)


def override(config: Config, section: str, **changes: Any) -> Config:
    """Return ``config`` with some keys of one section replaced (for CLI flags)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    current = getattr(config, section)
    raw = {**{f.name: getattr(current, f.name) for f in dataclasses.fields(current) if f.init},
           **changes}
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
    return dataclasses.replace(config, **{section: _build_section(section, type(current), raw)})


__all__ = ["Config", "ConfigError", "MiB", "load", "override"]

"""Configuration: every key, declared once, as a frozen dataclass field with its default.

Reading a file into these, loudly, is :mod:`scand.configload`: unknown
sections, unknown keys and values of the wrong type or range are errors that
name the key (``pool.workers: must be >= 1, got 0``); :func:`load`,
:func:`from_mapping` and :func:`override` here call it. Stdlib only.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        from scand.configload import MIN_SECRET, read_private_file
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


def from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from parsed TOML, naming the first bad key
    (:mod:`scand.configload`)."""
    from scand import configload
    return configload.from_mapping(data)


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file (:mod:`scand.configload`)."""
    from scand import configload
    return configload.load(path)


def override(config: Config, section: str, **changes: Any) -> Config:
    """Return ``config`` with some keys of one section replaced (for CLI flags),
    checked as a file's would be (:mod:`scand.configload`)."""
    from scand import configload
    return configload.override(config, section, **changes)


__all__ = ["Config", "ConfigError", "MiB", "load", "override"]

"""Reading a configuration: TOML into :class:`scand.config.Config`, checked key by key.

Unknown sections, unknown keys and values of the wrong type or range are
errors that name the key (``pool.workers: must be >= 1, got 0``): the type
from each field's hint, the range from :data:`_CHECKS`. Also the secret files
some keys name (read when the config is built, never from TOML). Stdlib only;
:mod:`scand.config` (the keys and their defaults) calls in here for ``load``,
``from_mapping`` and ``override``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
import tomllib
import typing
from collections.abc import Callable, Mapping
from typing import Any

from scand.config import Config, ConfigError
from scand.engines.registry import REGISTRY

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

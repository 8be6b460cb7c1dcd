"""``scand serve`` and ``scand check-config`` (``top`` and ``stats``: :mod:`scand.top`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
from collections.abc import Callable

import structlog
import trio

import scand
from scand import config as configmod
from scand import logs, metrics, overrides, privileges, top
from scand.clamd.supervisor import ManagedClamd
from scand.config import Config, ConfigError
from scand.engines import auto
from scand.engines.base import EngineError, load_engine
from scand.farm.agent import AgentFront
from scand.fronts.accept import HANDSHAKE_TIMEOUT, FrontServer
from scand.fronts.budget import MemoryBudget, budget_bytes
from scand.fronts.listen import SocketPathError, fd_budget
from scand.fronts.unlinker import SocketRemover
from scand.fronts.wiring import bind_fronts, close_fronts
from scand.milter.message import sweep_stale_spool
from scand.pool.pool import Pool
from scand.pool.spawner import Spawner
from scand.selfcheck import SelfCheck
from scand.service import Service

# sysexits.h: EX_CONFIG, for a config or signature set scand cannot start with.
EX_CONFIG = 78

DESCRIPTION = """\
scand is a virus-scanning daemon for mail servers. Mail filters (Exim's
av_scanner = sophie:..., amavisd-new, MIMEDefang, qmail and Postfix hooks) ask
it over a Unix socket, in the Sophie protocol, whether a file or a spool
directory is clean, and get a one-line verdict: "0" clean, "1:<name>"
infected, "-1:<reason>" not scanned (the MTA then defers and retries).
scand never answers "0" for anything it did not fully scan."""

EPILOG = """\
files:
  /var/run/sophie          default socket when /var/run is writable; otherwise
                           $XDG_RUNTIME_DIR/scand/sophie or /tmp/scand-<uid>/sophie
  examples/scand.toml      every config key, commented, with its default
  /var/lib/clamav          ClamAV's database (freshclam's), the signature directory
                           of engine auto, clamav and clamd when --signatures is not
                           given and it holds one; checked every engine.self_check
                           seconds (600) and reloaded as RELOAD once a change has held
                           still for engine.self_check_settle seconds (5)

signals:
  SIGTERM, SIGINT          stop accepting, finish scans in progress within
                           server.shutdown_grace seconds, remove the socket, exit 0
  SIGHUP                   reload config and signatures (same as the RELOAD line);
                           a broken signature file keeps the old set and is logged

exit status:
  0   stopped cleanly;  2   bad command line;
  78  bad config, bad signature file or unusable socket path (message names it)

examples:
  scand serve                                     engine auto, default socket
  scand serve --socket /tmp/s --signatures /var/lib/scand/sigs --workers 2
  scand serve --clamd-socket /run/clamav/clamd.ctl    also a drop-in for clamd clients
  scand serve --milter-socket /var/spool/postfix/scand/milter   Postfix smtpd_milters
  scand serve --engine clamav --signatures /var/lib/clamav      libclamav in the workers
  scand check-config /etc/scand/scand.toml
  scand top                                       live view (scand top --help)
  scand stats --json                              the same, once
  printf '/var/spool/scan/msg1\\n' | socat - UNIX-CONNECT:/var/run/sophie
"""


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="scand", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt
    )
    parser.add_argument("--version", action="version", version=f"scand {scand.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        formatter_class=fmt,
        description=textwrap.dedent("""\
            Run the daemon in the foreground (for systemd, daemontools or runit).
            Workers are started and their engines loaded before the socket
            accepts. Logs are JSON lines on stderr (readable text on a terminal),
            one line per request. Flags override the config file."""),
        epilog=EPILOG,
    )
    serve.add_argument("--config", metavar="FILE", help="TOML config file (see examples/)")
    serve.add_argument("--socket", metavar="PATH", help="Unix socket path (server.socket)")
    serve.add_argument("--socket-group", metavar="GROUP",
                       help="group of the socket, name or number (server.socket_group)")
    serve.add_argument("--socket-mode", metavar="MODE",
                       help="octal mode of the socket, e.g. 0660 (server.socket_mode)")
    serve.add_argument(
        "--engine", metavar="NAME",
        help="scanner engine: auto (default: clamav when libclamav loads and the "
             "signature directory, /var/lib/clamav by default, holds a ClamAV database; "
             "else builtin), builtin (EICAR plus .hdb/.hsb/.ndb), clamav (libclamav in the "
             "workers), clamd (ClamAV's daemon, managed or external), chaos (fault injection)"
    )
    serve.add_argument(
        "--signatures", metavar="DIR",
        help="signature directory: .hdb/.hsb/.ndb for builtin; any ClamAV database "
             "(.cvd .cld .hdb .ndb .ldb ...) for clamav and clamd (default for auto, clamav "
             "and clamd: /var/lib/clamav when it holds one)"
    )
    serve.add_argument(
        "--milter-socket", metavar="PATH",
        help="also serve the milter protocol on this Unix socket (milter.socket)",
    )
    serve.add_argument(
        "--workers", metavar="N", type=int, help="worker processes (0 = number of CPUs)"
    )
    serve.add_argument(
        "--clamd-socket", metavar="PATH",
        help="also speak clamd's protocol on this Unix socket (clamd_front.socket)",
    )
    serve.add_argument(
        "--metrics", metavar="HOST:PORT",
        help="serve Prometheus metrics on HOST:PORT (metrics.listen; off by default)",
    )
    check = sub.add_parser(
        "check-config",
        help="validate a config file and its signature set, then exit",
        formatter_class=fmt,
        description="Parse FILE, check every key and value, and load the signature\n"
        "set it names. Exits 0 and prints a summary, or exits 78 naming the bad key.",
    )
    check.add_argument("file", metavar="FILE")
    top.add_parsers(sub)
    return parser


def make_loader(args: argparse.Namespace,
                resolver: auto.Resolver | None = None) -> Callable[[], Config]:
    """A function that (re)builds the config: file first, then command-line flags,
    then ``engine.name = "auto"`` resolved (once, at the first load)."""
    resolve = resolver or auto.Resolver()

    warned = False

    def load() -> Config:
        nonlocal warned
        config = from_file = configmod.load(args.config) if args.config else Config()
        config = configmod.override(config, "server", socket=args.socket,
                                    socket_group=args.socket_group, socket_mode=args.socket_mode)
        config = configmod.override(
            config, "engine", name=args.engine, signatures=args.signatures
        )
        config = configmod.override(config, "clamd_front", socket=args.clamd_socket)
        config = configmod.override(config, "metrics", listen=args.metrics)
        config = configmod.override(config, "milter", socket=getattr(args, "milter_socket", None))
        config = configmod.override(config, "pool", workers=args.workers)
        for key in [] if warned else overrides.overridden(from_file, config):
            print(f"scand: warning: a command-line flag overrides {key} from {args.config}",
                  file=sys.stderr)
        warned = True
        return resolve(config)

    return load


async def serve(config: Config, loader: Callable[[], Config],
                engine_reason: Callable[[], str] = lambda: "") -> None:
    """Bind every front, fork the worker zygote, drop root, then start clamd, pool and fronts."""
    log = structlog.get_logger("scand")
    who = privileges.resolve(config.server.user, config.server.group)
    check_rereadable(config, who)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            nofile, max_conns = fd_budget(config)
            log.info("fd_budget", nofile=nofile, max_connections=max_conns,
                     configured=config.server.max_connections)
            specs = bind_fronts(config, who)  # as root if we are: ports < 1024, root dirs
            metrics_bound = None
            remover = SocketRemover()
            spawner = Spawner()
            servers: list[FrontServer] = []
            try:
                if config.metrics.listen:
                    metrics_bound = metrics.bind(config.metrics.listen, config.metrics.allow)
                for spec in specs:
                    for bound in spec.bound:
                        if bound.kind == "unix":
                            remover.add(bound.name)
                if config.milter.socket or config.milter.inet:
                    owners = {os.geteuid()} | ({who.uid} if who is not None else set())
                    if swept := sweep_stale_spool(config.milter.spool_dir, owners):
                        log.info("milter_spool_swept", removed=swept)  # left by a killed daemon
                await spawner.start(config)  # as root if we are: it drops privileges itself
                managed = None
                if config.engine.name == "clamd" and not config.clamd.sockets:
                    managed = ManagedClamd(config)
                    managed.prepare(who)
                if who is not None:
                    remover.start_helper()  # keeps root to remove the sockets at stop
                privileges.become(who)
                if who is not None:
                    log.info("privileges_dropped", user=who.name, uid=who.uid, gid=who.gid)
                if managed is not None:
                    await nursery.start(managed.run)
                    config = managed.worker_config(config)
                pool = Pool(config, spawner)
                await nursery.start(pool.run)
                service = Service(config, pool, loader, managed, engine_reason)
                await nursery.start(service.run)
                self_check = SelfCheck(service)
                service.self_check_stats = self_check.stats
                await nursery.start(self_check.run)
                budget = MemoryBudget(budget_bytes(
                    config.server.memory_budget_mb, config.clamd_front.stream_memory_mb,
                    config.server.max_stream_bytes))
                stop = lambda: os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
                for spec in specs:
                    server = FrontServer(spec.make(service, stop), spec.bound,
                                         max_connections=max_conns, budget=budget,
                                         handshake_timeout=min(
                                             HANDSHAKE_TIMEOUT, config.server.request_timeout),
                                         remover=remover,
                                         proxy_from=config.farm.proxy_from
                                         if spec.name in ("sophie", "clamd") else ())
                    servers.append(server)
                    await nursery.start(server.run)
                if metrics_bound is not None:
                    server = metrics.server(service, metrics_bound, servers)
                    servers.append(server)
                    await nursery.start(server.run)
            except BaseException:
                # Failed before serving: leave no socket behind for a client to hang on.
                for server in servers:  # their accept loops end before the sockets close
                    server.stop_accepting()
                close_fronts(specs)
                if metrics_bound is not None:
                    metrics_bound.sock.close()
                remover.close()
                await spawner.aclose()
                raise
            log.info("ready", socket=config.socket_path, version=service.version(),
                     engine=engine_reason() or config.engine.name,
                     fronts={s.front.name: [b.name for b in s.bound] for s in servers},
                     memory_budget=budget.limit, workers=config.worker_count, pid=os.getpid())
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("sighup")
                    service.request_reload()
                    continue
                log.info("stopping", signal=signal.Signals(signum).name)
                break
            agents = [s.front for s in servers if isinstance(s.front, AgentFront)]
            if agents:  # the balancer hears "drain" before the listeners close
                for agent in agents:
                    agent.stopping = True
                await trio.sleep(service.config.farm.drain_delay)
            grace = service.config.server.shutdown_grace
            service.draining = True
            for server in servers:
                server.stop_accepting()
            async with trio.open_nursery() as drains:
                for server in servers:
                    drains.start_soon(server.drain, grace)
            nursery.cancel_scope.cancel()
        remover.close()
        await spawner.aclose()
    log.info("stopped", requests=service.stats.requests)


def check_rereadable(config: Config, who: privileges.Identity | None) -> None:
    """Secret files are read again at every reload, after root was dropped: one only
    root can read would make every later reload (SIGHUP, RELOAD, self-check after a
    signature update) fail. Refuse it at start, naming the key."""
    if who is None:
        return
    for key, path in (("cache.secret_file", config.cache.secret_file),
                      ("cache.redis_password_file", config.cache.redis_password_file)):
        if not path:
            continue
        try:
            owner = os.stat(path).st_uid
        except OSError:
            continue  # the config load already said why it cannot be read
        if owner != who.uid:
            raise privileges.PrivilegeError(
                f"{key}: {path} is owned by uid {owner}, but scand runs as {who.name} "
                f"after start and reads it again at each reload; chown {who.name} {path}")


def cmd_serve(args: argparse.Namespace) -> int:
    resolver = auto.Resolver()
    loader = make_loader(args, resolver)
    try:
        config = loader()
    except ConfigError as exc:
        print(f"scand: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    logs.configure(config.log.level, config.log.format)
    try:
        trio.run(serve, config, loader, lambda: resolver.reason)
    except BaseException as exc:
        cause = _startup_error(exc)
        if cause is None:
            raise
        structlog.get_logger("scand").error("startup_failed", error=str(cause))
        print(f"scand: cannot start: {cause}", file=sys.stderr)
        return EX_CONFIG
    return 0


def _startup_error(exc: BaseException) -> Exception | None:
    """The config-like error inside trio's exception groups, if that is what stopped us."""
    if isinstance(exc, (EngineError, SocketPathError, OSError, privileges.PrivilegeError,
                        metrics.MetricsUnavailable)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_error(inner)
            if found is not None:
                return found
    return None


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config, reason = auto.resolve(configmod.load(args.file))
        engine = load_engine(config)
    except (ConfigError, EngineError) as exc:
        print(f"scand: {args.file}: {exc}", file=sys.stderr)
        return EX_CONFIG
    info = engine.info()
    print(f"{args.file}: OK (engine {info.name}, {info.signatures}, "
          f"socket {config.socket_path}, {config.worker_count} workers)"
          + (f"; {reason}" if reason else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "check-config":
        return cmd_check_config(args)
    if args.command == "top":
        return top.cmd_top(args)
    if args.command == "stats":
        return top.cmd_stats(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

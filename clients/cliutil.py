"""What the command-line clients share: options, environment, warnings, one scan.

A small getopt stands in for argparse and getopt, which pull in ``re`` and
``gettext``: about 7 ms on every message.
"""

from __future__ import annotations

import os
import sys

from clients.core import (
    CLIENT_VERSION,
    DEFAULT_TIMEOUT,
    TYPE_CHECKING,
    ScandError,
    Unchecked,
    Verdict,
)
from clients.message import Message, stage, unspool
from clients.sync import Client

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable


class UsageError(Exception):
    """A bad command line or environment variable (the message says which)."""


def _positive(raw: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{what} is not a number: {raw!r}") from None
    if not value > 0:
        raise UsageError(f"{what} must be > 0, got {raw!r}")
    return value


def env_float(name: str, default: float) -> float:
    """A positive number from the environment, or ``default`` when unset."""
    raw = os.environ.get(name, "")
    return _positive(raw, name) if raw else default


def parse_options(
    argv: list[str], flags: tuple[str, ...], valued: tuple[str, ...]
) -> tuple[dict[str, str | bool], list[str]]:
    """``--opt VALUE``, ``--opt=VALUE``, ``-o VALUE``, flags, ``--``.

    ``-`` alone is an operand. Options may follow operands until ``--``.
    """
    opts: dict[str, str | bool] = {}
    operands: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands += args[i:]
            break
        if arg == "-" or not arg.startswith("-"):
            operands.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in flags and not eq:
            opts[name] = True
        elif name in valued:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"option {name} needs a value")
                value = args[i]
                i += 1
            opts[name] = value
        else:
            raise UsageError(f"unknown option {arg!r}")
    return opts, operands


def option_float(opts: dict[str, str | bool], name: str, default: float) -> float:
    """A positive number given as ``name`` on the command line, else ``default``."""
    raw = opts.get(name)
    return _positive(raw, name) if isinstance(raw, str) else default


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """``$name`` if it is one of ``choices``, the first choice when unset; else a UsageError."""
    value = os.environ.get(name, "") or choices[0]
    if value not in choices:
        raise UsageError(f"{name} must be {' or '.join(choices)}, got {value!r}")
    return value


def scan_timeout(opts: dict[str, str | bool]) -> float:
    """``--timeout``, else ``$SCAND_TIMEOUT``, else the default: seconds for the whole scan."""
    return option_float(opts, "--timeout", env_float("SCAND_TIMEOUT", DEFAULT_TIMEOUT))


def option_str(opts: dict[str, str | bool], name: str, env: str, default: str = "") -> str:
    """``name`` from the command line, else ``$env``, else ``default``."""
    raw = opts.get(name)
    return raw if isinstance(raw, str) and raw else os.environ.get(env, "") or default


def scan_message(client: Client, msg: Message) -> Verdict:
    """Scan a staged message: by path if it was spooled (then unspool it), else STREAM it."""
    if msg.spool_path:
        try:
            return client.scan_path(msg.spool_path)
        finally:
            unspool(msg)
    return client.scan_fd(msg.fd, msg.offset, msg.length)


def stage_and_scan(opts: dict[str, str | bool], timeout: float) -> tuple[Message, Verdict | str]:
    """Stage descriptor 0 (``--spool-dir``/``$SCAND_SPOOL_DIR`` or a memfd) and scan it.

    Returns the message and its verdict, or the message and why there is no
    verdict (a text for the log). A spool file's name is always removed.
    """
    msg = Message(-1, 0, 0)
    try:
        msg = stage(0, option_str(opts, "--spool-dir", "SCAND_SPOOL_DIR"))
        with Client(option_str(opts, "--socket", "SCAND_SOCKET") or None, timeout) as client:
            return msg, scan_message(client, msg)
    except ScandError as exc:
        return msg, f"virus scanner unavailable: {exc}"
    except OSError as exc:
        what = "read" if msg.fd >= 0 else "spool"
        return msg, f"cannot {what} the message: {exc}"
    finally:
        unspool(msg)


def not_scanned(verdict: Unchecked) -> str:
    """The log text for a ``-1:<reason>`` reply."""
    detail = f" {verdict.detail}" if verdict.detail else ""
    return f"message not scanned: {verdict.reason}{detail}"


def manual_asked(opts: dict[str, str | bool], prog: str, manual: str) -> bool:
    """Print the manual (-h, --help) or the version (--version) if asked; True if so.

    ``--install PREFIX`` (a single file only) installs it byte-compiled: see
    :func:`install_self`.
    """
    if "-h" in opts or "--help" in opts:
        sys.stdout.write(manual)  # only ever asked for by a person at a terminal
    elif "--version" in opts:
        sys.stdout.write(f"{prog} {CLIENT_VERSION}\n")
    elif isinstance(opts.get("--install"), str):
        for path in install_self(prog, str(opts["--install"])):
            sys.stdout.write(f"{path}\n")
    else:
        return False
    sys.stdout.flush()
    return True


def stub_text(prog: str, module: str, libdirs: list[str], python: str) -> str:
    """A console script that imports ``module`` (byte-compiled) from ``libdirs`` and runs it."""
    return (
        f"#!{python} -IS\n"
        f'"""{prog}: runs the byte-compiled single file {module}.py (clients/build.py)."""\n'
        "import sys\n"
        f"sys.path[:0] = {libdirs!r}\n"
        f"from {module} import main\n"
        "sys.exit(main())\n"
    )


def install_self(prog: str, prefix: str) -> list[str]:
    """Install this single file as PREFIX/lib/scand-clients/MODULE.py, byte-compiled,
    with the stub PREFIX/bin/PROG that runs it.

    A script is compiled on every run (about 5 ms of CPU per message here); a
    module is read from its __pycache__. Run it with the interpreter the MTA
    should use: the stub names it.
    """
    import py_compile

    main = sys.modules["__main__"]
    source = getattr(main, "__file__", None) or ""
    with open(source, "rb") as fh:
        text = fh.read()
    if b"\nfrom clients." in text:
        raise UsageError("--install works on a single file (python3 -m clients.build DIR)")
    module = prog.replace("-", "_")
    lib = os.path.join(os.path.abspath(prefix), "lib", "scand-clients")
    bindir = os.path.join(os.path.abspath(prefix), "bin")
    target, script = os.path.join(lib, f"{module}.py"), os.path.join(bindir, prog)
    os.makedirs(lib, exist_ok=True)
    os.makedirs(bindir, exist_ok=True)
    for path, data, mode in ((target, text, 0o644),
                             (script, stub_text(prog, module, [lib], sys.executable).encode(),
                              0o755)):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    py_compile.compile(target, doraise=True)
    return [script, target]


def guarded(run: Callable[[list[str]], int], prog: str, argv: list[str], code: int) -> int:
    """``run(argv)``; a bug (any Exception) is logged and exits ``code``: defer, never pass."""
    try:
        return run(argv)
    except Exception as exc:
        warn(prog, f"temporary failure: internal error: {type(exc).__name__}: {exc}")
        return code


def warn(prog: str, message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()

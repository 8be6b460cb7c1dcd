"""``[engine] name = "auto"``: ClamAV's database when the host has one, else built-in.

A Debian host with ``clamav-freshclam`` keeps ClamAV's database in
``/var/lib/clamav`` (clamd's ``DatabaseDirectory``). ``auto`` picks the
``clamav`` engine (libclamav in the workers) when libclamav loads and the
signature directory (``engine.signatures``, or ``/var/lib/clamav`` when that is
empty) holds a database file, and the built-in engine otherwise. The same
default directory applies to ``clamav`` and ``clamd`` named explicitly with no
``signatures``, when it holds a database.

The choice is made once, when the daemon starts (:class:`Resolver`), and kept
across reloads: a database that appears later is picked up by a restart, not by
a RELOAD that would swap the engine under the running pool. The reason is one
line for the ``ready`` log line and ``VERSION``:
``auto: clamav (libclamav 1.4.6, /var/lib/clamav: 3 files)`` or
``auto: builtin (no database in /var/lib/clamav)``.

Stdlib only (workers import :mod:`scand.engines.base`, which uses it for a
config that still says ``auto``). libclamav is tried only when a database is
there, so a host without ClamAV never touches it, and then in a child
interpreter (``python -m scand.engines.auto [LIBRARY]``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scand.config import Config

AUTO = "auto"
# Loading libclamav (no signatures) takes well under a second; this is a hung one.
PROBE_TIMEOUT = 30.0
# clamd's DatabaseDirectory on Debian, where freshclam keeps the database.
CLAMAV_DATABASE_DIR = "/var/lib/clamav"
# Engines for which an empty engine.signatures means CLAMAV_DATABASE_DIR.
CLAMAV_ENGINES = ("clamav", "clamd")
# Files cl_load reads that hold signatures (clamav's CLI_DBEXT, without the
# configuration-only .cfg/.ftm/.ign/.ign2/.info): any one of them is a database.
DATABASE_SUFFIXES = frozenset({
    ".cvd", ".cld", ".cud", ".db", ".hdb", ".hdu", ".hsb", ".hsu", ".mdb", ".mdu",
    ".msb", ".msu", ".ndb", ".ndu", ".ldb", ".ldu", ".sdb", ".zmd", ".rmd", ".idb",
    ".pdb", ".gdb", ".wdb", ".cbc", ".cdb", ".cat", ".crb", ".fp", ".sfp", ".ioc",
    ".yar", ".yara", ".pwdb",
})


# Files that change what cl_load loads without holding signatures themselves.
SETTINGS_SUFFIXES = frozenset({".cfg", ".ftm", ".ign", ".ign2", ".info"})


@dataclass(frozen=True, slots=True)
class Choice:
    """What ``auto`` (or an empty ``signatures``) came to, and why."""

    name: str  # a concrete engine name
    signatures: str  # the directory that engine loads ("" = its own default)
    reason: str  # one line; "" when nothing was decided here


def database_files(directory: str) -> list[str]:
    """The ClamAV database files in ``directory`` (sorted names, empty files left
    out); [] if unreadable."""
    state = database_state(directory)
    if isinstance(state, str):
        return []
    return [name for name, size, _, _ in state
            if size > 0 and os.path.splitext(name)[1].lower() in DATABASE_SUFFIXES]


def database_state(directory: str) -> tuple[tuple[str, int, int, int], ...] | str:
    """(name, size, mtime_ns, inode) of every file a load reads (databases and their
    settings: .ign2, .cfg, ...), sorted; a string when the directory is unreadable.

    Other files are left out: freshclam rewrites its freshclam.dat at every run,
    and a reload of an unchanged database for it would be wasted (clamd's
    SelfCheck, too, looks at database files only)."""
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    state = []
    for entry in entries:
        suffix = os.path.splitext(entry.name)[1].lower()
        if suffix not in DATABASE_SUFFIXES and suffix not in SETTINGS_SUFFIXES:
            continue
        try:
            if not entry.is_file():
                continue
            st = entry.stat()
        except OSError:
            continue
        state.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(state))


def libclamav_version(library: str = "") -> tuple[str, str]:
    """(version, "") when libclamav loads, else ("", why not).

    Tried in a child interpreter, so the daemon never maps libclamav itself
    (measured: 4 MB more RSS in a daemon that had loaded it); only the zygote does."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run([sys.executable, "-m", "scand.engines.clamav.probe", library],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              check=False, env={**os.environ, "PYTHONPATH": path})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"cannot probe libclamav: {exc}"
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip(), ""
    lines = (done.stderr or done.stdout).strip().splitlines()
    return "", lines[-1] if lines else f"probe exited {done.returncode}"


def choose(name: str, signatures: str, library: str = "",
           default_dir: str = CLAMAV_DATABASE_DIR) -> Choice:
    """The engine and directory for ``engine.name``/``engine.signatures``."""
    if name not in (AUTO, *CLAMAV_ENGINES):
        return Choice(name, signatures, "")
    directory = signatures or default_dir
    files = database_files(directory)
    if name != AUTO:  # clamav/clamd: the default directory only when it holds a database
        if signatures or not files:
            return Choice(name, signatures, "")
        return Choice(name, directory, f"{name}: {directory}: {len(files)} files")
    if not files:
        return Choice("builtin", signatures, f"auto: builtin (no database in {directory})")
    version, why = libclamav_version(library)
    if not version:
        return Choice("builtin", signatures, f"auto: builtin (libclamav did not load: {why})")
    return Choice("clamav", directory,
                  f"auto: clamav (libclamav {version}, {directory}: {len(files)} files)")


def apply(config: Config, choice: Choice) -> Config:
    """``config`` with the chosen engine name and signature directory."""
    engine = dataclasses.replace(config.engine, name=choice.name, signatures=choice.signatures)
    return dataclasses.replace(config, engine=engine)


def resolve(config: Config) -> tuple[Config, str]:
    """A config whose engine is concrete, and the reason ("" if nothing was chosen)."""
    choice = choose(config.engine.name, config.engine.signatures, config.clamav.library)
    return apply(config, choice), choice.reason


class Resolver:
    """Resolve ``auto`` once (the first config), then hold that choice on reloads.

    A reloaded config that still says ``auto`` gets the engine chosen at start
    (and keeps its reason); one that names an engine gets that engine, with the
    default directory rule. ``reason`` is the last config's.
    """

    def __init__(self) -> None:
        self.engine = ""  # the engine auto chose at start ("" = not yet)
        self.reason = ""
        self._start_reason = ""

    def __call__(self, config: Config) -> Config:
        if config.engine.name == AUTO and self.engine:
            choice = choose(self.engine, config.engine.signatures, config.clamav.library)
            self.reason = self._start_reason
        else:
            choice = choose(config.engine.name, config.engine.signatures, config.clamav.library)
            self.reason = choice.reason
            if config.engine.name == AUTO:
                self.engine, self._start_reason = choice.name, choice.reason
        return apply(config, choice)

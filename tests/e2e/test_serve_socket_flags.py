"""`scand serve --socket-group G --socket-mode MODE`: one command can serve an MTA user."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, DaemonFactory


def test_flags_set_the_socket_group_and_mode(scand_daemon: DaemonFactory) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    if os.geteuid() == 0:  # root may give the socket any group: prove it is not just our own
        group = next(g.gr_name for g in grp.getgrall() if g.gr_gid != os.getegid())
    d = scand_daemon("--socket-group", group, "--socket-mode", "0640", workers=1)
    st = os.stat(d.socket)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_gid == grp.getgrnam(group).gr_gid
    assert d.ask(b"PING\n") == b"PONG\n"


def test_a_flag_overrides_the_config_file(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon("--socket-mode", "0600", workers=1,
                     config='[server]\nsocket_mode = "0666"\n')
    assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o600


def test_bad_flags_name_the_key(short_tmp: Path) -> None:
    for flag, value, key in (("--socket-mode", "0999", "server.socket_mode"),
                             ("--socket-group", "no-such-group-x", "server.socket_group")):
        done = subprocess.run(
            [sys.executable, "-m", "scand.cli", "serve", "--socket", str(short_tmp / "s"),
             "--workers", "1", flag, value],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)
        assert done.returncode == 78, done.stderr
        assert key in done.stderr

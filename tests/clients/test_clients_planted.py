"""The clients' default socket in a planted directory (issue 24): another user made
``$XDG_RUNTIME_DIR/scand`` (or ``/tmp/scand-<uid>``) first and put a fake daemon
there that answers ``0`` to everything. The clients refuse that socket as
unavailable (the MTA defers), never ask it, never report ``OK``."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from clients import core
from clients import scandclient as sc
from tests.clients.conftest import EICAR, FakeSophie, client_env, run_client
from tests.unit.test_safedir import plant, root_only, shared

__all__ = ["shared"]  # the fixture, re-used


def says_clean(conn: socket.socket, n: int) -> None:
    while conn.recv(65536):
        conn.sendall(b"0\n")


@root_only
def test_a_planted_default_directory_is_refused(shared: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    planted = plant(shared / "scand")
    monkeypatch.delenv("SCAND_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    fake = FakeSophie(str(planted / "sophie"), says_clean)  # the planter's fake daemon
    try:
        assert core.default_socket_path() == str(planted / "sophie")
        assert "owned by uid 65534" in core.untrusted_dir(str(planted / "sophie"))
        with pytest.raises(sc.ScandUnavailable, match="not scand's"), sc.Client() as c:
            c.scan_bytes(EICAR)
        eicar = shared.parent / "eicar.com"
        eicar.write_bytes(EICAR)
        out = run_client("scand-scan", str(eicar), env=client_env(
            XDG_RUNTIME_DIR=str(shared)))
        assert out.returncode not in (0, 1) and b"OK" not in out.stdout, out
        assert fake.connections == 0  # never even asked
    finally:
        fake.close()


def test_own_directory_passes_and_other_paths_are_not_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    own = tmp_path / "scand"
    own.mkdir(mode=0o700)
    assert core.untrusted_dir(str(own / "sophie")) == ""
    own.chmod(0o777)
    assert core.untrusted_dir(str(own / "sophie")) == "can be written by others"
    os.chmod(own, 0o700)
    # An explicit --socket elsewhere is the admin's choice: not judged here.
    assert core.untrusted_dir(str(tmp_path / "elsewhere" / "sophie")) == ""
    assert core.untrusted_dir(str(tmp_path / "missing" / "sophie")) == ""

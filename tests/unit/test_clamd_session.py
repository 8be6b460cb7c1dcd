"""The clamd engine's transfer (scand.clamd.session) against a scripted clamd.

The fake speaks the part of clamd's protocol the engine uses (IDSESSION, FILDES
with the descriptor riding on the command, INSTREAM, SCAN) and records what
arrived on which connection, so each test can say how the request travelled.
A real clamd runs the same paths in tests/e2e/test_clamd.py.
"""

from __future__ import annotations

import array
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scand import config as configmod
from scand.clamd.engine import ClamdEngine
from scand.config import Config
from scand.engines.base import Target
from scand.events import CLEAN, Infected, Reason, Unchecked

EVIL = b"EVIL-TEST-BODY"


@dataclass
class Conn:
    commands: list[str] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)  # what each FILDES/INSTREAM carried


class FakeClamd:
    """A clamd on ``path``: replies ``<id>: fd[n]: OK`` (or ``Evil.Test FOUND`` when the
    content holds EVIL). ``close_after``: end each connection after that many replies;
    ``silent``: close instead of answering; ``wrong_id``: answer with a later id."""

    def __init__(self, path: str, close_after: int = 0) -> None:
        self.path = path
        self.close_after = close_after
        self.silent = False
        self.wrong_id = False
        self.version = "ClamAV 1.4.6/27001/Mon Dec  7 09:00:00 2026"
        self.conns: list[Conn] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        os.unlink(self.path)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = Conn()
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(sock, conn), daemon=True).start()

    def _serve(self, sock: socket.socket, conn: Conn) -> None:
        buf, fds, session, n = b"", [], False, 0
        with sock:
            while True:
                while b"\n" not in buf:
                    data, anc, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
                    if not data:
                        return
                    for level, kind, raw in anc:
                        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                            fds.extend(array.array("i", raw[: len(raw) - len(raw) % 4]))
                    buf += data
                line, _, buf = buf.partition(b"\n")
                command = line[1:].decode()
                conn.commands.append(command)
                if command == "IDSESSION":
                    session = True
                    continue
                if command == "VERSION":
                    n += 1
                    sock.sendall(f"{n}: {self.version}\n".encode() if session
                                 else f"{self.version}\n".encode())
                    continue
                if command == "FILDES":
                    buf = buf[1:]  # the dummy byte
                    fd = fds.pop(0)
                    content = os.pread(fd, 1 << 20, 0)
                    os.close(fd)
                    name = f"fd[{fd}]"
                elif command == "INSTREAM":
                    content = b""
                    while True:
                        while len(buf) < 4:
                            buf += sock.recv(65536)
                        (size,), buf = struct.unpack("!L", buf[:4]), buf[4:]
                        if not size:
                            break
                        while len(buf) < size:
                            buf += sock.recv(65536)
                        content, buf = content + buf[:size], buf[size:]
                    name = "stream"
                else:
                    content, name = b"", command.partition(" ")[2] or command
                conn.contents.append(content)
                n += 1
                if self.silent:
                    return
                result = "Evil.Test FOUND" if EVIL in content else "OK"
                reply = f"{name}: {result}"
                if session:
                    reply = f"{n + 1 if self.wrong_id else n}: {reply}"
                sock.sendall(reply.encode() + b"\n")
                if not session or (self.close_after and n >= self.close_after):
                    return


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeClamd]:
    f = FakeClamd(str(tmp_path / "clamd.sock"))
    yield f
    f.stop()


def engine_for(sockets: list[str], **clamd: object) -> ClamdEngine:
    cfg = configmod.override(Config(), "clamd", sockets=sockets, timeout=5.0, **clamd)
    return ClamdEngine(cfg)  # not from_config: no VERSION connection


def scan(engine: ClamdEngine, path: Path) -> object:
    fd = os.open(path, os.O_RDONLY)
    try:
        return engine.scan_file(Target(str(path), fd, path.stat().st_size, 1 << 20))
    finally:
        os.close(fd)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    clean, evil = tmp_path / "clean.eml", tmp_path / "evil.eml"
    clean.write_bytes(b"Subject: hi\n\nhello\n")
    evil.write_bytes(b"Subject: hi\n\n" + EVIL + b"\n")
    return clean, evil


def test_one_session_carries_every_request(fake: FakeClamd, files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path])
    clean, evil = files
    assert scan(engine, clean) == CLEAN
    assert scan(engine, evil) == Infected("Evil.Test")
    assert engine.scan_bytes(b"bytes " + EVIL, "stream") == Infected("Evil.Test")
    assert engine.scan_bytes(b"plain bytes", "stream") == CLEAN
    # one connection, one IDSESSION; files and bytes both went as descriptors (the
    # bytes in a memfd), none as INSTREAM
    assert len(fake.conns) == 1
    assert fake.conns[0].commands == ["IDSESSION"] + ["FILDES"] * 4
    assert fake.conns[0].contents == [clean.read_bytes(), evil.read_bytes(),
                                      b"bytes " + EVIL, b"plain bytes"]


def test_stream_transfer_and_tcp_go_as_instream(fake: FakeClamd,
                                                files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path], transfer="stream", chunk_size=1024)
    evil = files[1]
    assert scan(engine, evil) == Infected("Evil.Test")
    big = b"x" * 5000 + EVIL
    assert engine.scan_bytes(big, "stream") == Infected("Evil.Test")
    assert fake.conns[0].commands == ["IDSESSION", "INSTREAM", "INSTREAM"]
    assert fake.conns[0].contents == [evil.read_bytes(), big]
    assert not engine_for(["127.0.0.1:3310"]).fildes  # TCP: never descriptors


def test_path_transfer_scans_by_name(fake: FakeClamd, files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path], transfer="path")
    assert scan(engine, files[0]) == CLEAN
    assert fake.conns[0].commands == ["IDSESSION", f"SCAN {files[0]}"]


def test_session_clamd_closed_is_reopened(tmp_path: Path, files: tuple[Path, Path]) -> None:
    f = FakeClamd(str(tmp_path / "c.sock"), close_after=1)  # clamd ends every session
    try:
        engine = engine_for([f.path])
        for _ in range(4):
            assert scan(engine, files[1]) == Infected("Evil.Test")
            assert scan(engine, files[0]) == CLEAN
        assert len(f.conns) == 8  # every request on a fresh session, none failed
    finally:
        f.stop()


def test_moved_symlink_means_a_new_session(tmp_path: Path, files: tuple[Path, Path]) -> None:
    """The managed clamd's switch (RELOAD, RSS, restart): the next request reaches
    the new clamd, not the old one through a session opened before the move."""
    a, b = FakeClamd(str(tmp_path / "a.sock")), FakeClamd(str(tmp_path / "b.sock"))
    link = tmp_path / "clamd.sock"
    try:
        link.symlink_to(a.path)
        engine = engine_for([str(link)])
        assert scan(engine, files[0]) == CLEAN
        assert scan(engine, files[0]) == CLEAN
        (tmp_path / "new").symlink_to(b.path)
        os.replace(tmp_path / "new", link)
        assert scan(engine, files[1]) == Infected("Evil.Test")
        assert [len(c.contents) for c in a.conns] == [2]
        assert [len(c.contents) for c in b.conns] == [1]
    finally:
        a.stop()
        b.stop()


def test_dead_clamd_is_unavailable_never_clean(fake: FakeClamd,
                                               files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path])
    assert scan(engine, files[0]) == CLEAN
    fake.silent = True  # dies with the request in hand: no retry, no verdict
    verdict = scan(engine, files[0])
    assert isinstance(verdict, Unchecked) and verdict.reason == Reason.ENGINE_UNAVAILABLE
    fake.silent = False
    assert scan(engine, files[1]) == Infected("Evil.Test")  # a new session
    fake.stop()
    fake.listener = socket.socket(socket.AF_UNIX)  # (so the fixture's stop is harmless)
    open(fake.path, "w").close()
    verdict = scan(engine, files[0])
    assert isinstance(verdict, Unchecked) and verdict.reason == Reason.ENGINE_UNAVAILABLE


def test_reply_out_of_step_is_never_taken(fake: FakeClamd, files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path])
    fake.wrong_id = True
    verdict = scan(engine, files[0])
    assert isinstance(verdict, Unchecked) and verdict.reason == Reason.ENGINE_UNAVAILABLE
    assert "out of step" in verdict.detail


def test_no_session_crosses_a_fork(fake: FakeClamd, files: tuple[Path, Path]) -> None:
    engine = engine_for([fake.path])
    assert scan(engine, files[0]) == CLEAN
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            engine.forked()
            code = 0 if scan(engine, files[1]) == Infected("Evil.Test") else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert scan(engine, files[0]) == CLEAN  # the parent's session still works
    assert sorted(len(c.contents) for c in fake.conns) == [1, 2]


def test_a_clamd_that_reloaded_its_database_is_a_new_cache_generation(
        fake: FakeClamd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """clamd reloads by itself (freshclam, SelfCheck): its VERSION names the new
    database, and entries cached under the old one are not answered again."""
    from scand.clamd import engine as enginemod
    from scand.engines.base import load_engine
    from scand.worker.scanner import Scanner

    now = [1000.0]
    monkeypatch.setattr(enginemod.time, "monotonic", lambda: now[0])
    cfg = configmod.override(Config(), "clamd", sockets=(fake.path,), timeout=5.0)
    cfg = configmod.override(cfg, "engine", name="clamd")
    engine = load_engine(cfg)
    first = engine.generation_id
    assert first and engine.info().signatures == "db=27001"
    scanner = Scanner(engine, cfg)
    target = tmp_path / "mail.txt"
    target.write_bytes(b"Subject: hi\n\nnothing here, " + b"x" * 4096)
    scans = lambda: sum(len(c.contents) for c in fake.conns)  # noqa: E731
    assert scanner.scan_path(str(target)).verdict == CLEAN
    assert scanner.scan_path(str(target)).verdict == CLEAN
    assert scans() == 1  # the second answer came from the cache
    fake.version = "ClamAV 1.4.6/27002/Mon Dec  7 13:00:00 2026"  # clamd reloaded
    now[0] += enginemod.VERSION_CHECK - 1
    scanner.refresh()  # the worker does this after each reply
    assert scanner.scan_path(str(target)).verdict == CLEAN and scans() == 1  # not yet due
    now[0] += 2
    scanner.refresh()
    assert scanner.scan_path(str(target)).verdict == CLEAN
    assert scans() == 2 and engine.generation_id not in ("", first)
    assert engine.info().signatures == "db=27002"
    now[0] += enginemod.VERSION_CHECK + 1  # the same database: the cache stays
    scanner.refresh()
    assert scanner.scan_path(str(target)).verdict == CLEAN and scans() == 2
    fake.version = "COMMAND READ TIMED OUT"  # no version: the generation stays
    now[0] += enginemod.VERSION_CHECK + 1
    assert not engine.refreshed() and engine.info().signatures == "db=27002"

"""The message as a range of a file, never as bytes in memory.

A filter gets the message on descriptor 0. If that is a regular file
(qmail-qfilter hands its filters a seekable temporary file), it is used where
it is. Otherwise (a pipe from qmail-smtpd or Postfix) it is moved into a
memfd, or into the spool file when the daemon reads by path, with
``splice``/``sendfile`` in 1 MiB steps: the client's memory does not grow with
the message. The same file then feeds the daemon (``sendfile`` to the socket)
and, for clean mail, the next program (as its descriptor 0): one copy in all.
"""

from __future__ import annotations

import errno
import os
import stat

COPY_CHUNK = 1 << 20
# splice/sendfile cannot serve this pair of descriptors: fall back to the next way.
_NOT_HERE = (errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EBADF, errno.EOPNOTSUPP)


class Message:
    """``length`` bytes of file ``fd`` from ``offset``; ``spool_path`` if spooled."""

    __slots__ = ("fd", "length", "offset", "spool_path")

    def __init__(self, fd: int, offset: int, length: int, spool_path: str = "") -> None:
        self.fd = fd
        self.offset = offset
        self.length = length
        self.spool_path = spool_path


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` (os.write may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_fd(src: int, dst: int) -> int:
    """Copy ``src`` from its position to end of file into ``dst``; return the count.

    splice (a pipe on either side), else sendfile (a regular source), else
    read/write; each step moves at most 1 MiB, so memory stays flat.
    """
    total = 0
    way = 0 if hasattr(os, "splice") else 1
    while True:
        try:
            if way == 0:
                n = os.splice(src, dst, COPY_CHUNK)
            elif way == 1:
                n = os.sendfile(dst, src, None, COPY_CHUNK)
            else:
                data = os.read(src, COPY_CHUNK)
                write_all(dst, data)
                n = len(data)
        except OSError as exc:
            if way < 2 and exc.errno in _NOT_HERE:
                way += 1  # a refused call moved nothing: try the next way
                continue
            raise
        if n == 0:
            return total
        total += n


def copy_range(msg: Message, dst: int) -> None:
    """Write the message to ``dst`` (sendfile; pread/write where sendfile cannot)."""
    done = 0
    while done < msg.length:
        want = min(COPY_CHUNK, msg.length - done)
        try:
            n = os.sendfile(dst, msg.fd, msg.offset + done, want)
        except OSError as exc:
            if exc.errno not in _NOT_HERE:
                raise
            data = os.pread(msg.fd, want, msg.offset + done)
            write_all(dst, data)
            n = len(data)
        if n == 0:
            raise OSError(0, f"the message file ended {msg.length - done} bytes early")
        done += n


def _anonymous_file() -> int:
    """A read-write file with no name: a memfd (no disk, no temp-dir rights), else O_TMPFILE."""
    try:
        return os.memfd_create("scand-message")
    except (AttributeError, OSError):  # pragma: no cover - other Unixes, old kernels
        tmp = os.environ.get("TMPDIR") or "/tmp"
        name = os.path.join(tmp, f"scand-message-{os.getpid()}-{os.urandom(6).hex()}")
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.unlink(name)
        return fd


def _spool_file(spool_dir: str, mode: int) -> tuple[int, str]:
    """A new private file in ``spool_dir``, created exclusively, then chmod'ed to ``mode``."""
    directory = os.path.abspath(spool_dir)
    for _ in range(100):
        name = os.path.join(directory, f"msg-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # after creation: the umask must not widen or narrow it
        except OSError:
            os.close(fd)
            os.unlink(name)
            raise
        return fd, name
    raise OSError(f"{directory}: cannot create a unique spool file")  # pragma: no cover


def stage(fd: int = 0, spool_dir: str = "", mode: int = 0o640) -> Message:
    """The message on ``fd`` as a file range, spooled to ``spool_dir`` if one is given.

    A spool file is for a daemon that reads by path (group-readable ``mode``);
    call :func:`unspool` once the daemon has answered, whatever it answered.
    """
    if spool_dir:
        out, name = _spool_file(spool_dir, mode)
        try:
            length = copy_fd(fd, out)
        except BaseException:
            os.close(out)
            unspool(Message(-1, 0, 0, name))
            raise
        return Message(out, 0, length, name)
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        offset = os.lseek(fd, 0, os.SEEK_CUR)
        return Message(fd, offset, max(st.st_size - offset, 0))
    out = _anonymous_file()
    try:
        return Message(out, 0, copy_fd(fd, out))
    except BaseException:
        os.close(out)
        raise


def unspool(msg: Message) -> None:
    """Remove the spool file's name (its open descriptor stays readable)."""
    if msg.spool_path:
        try:  # noqa: SIM105 - contextlib costs ~2 ms of start-up per message
            os.unlink(msg.spool_path)
        except FileNotFoundError:  # pragma: no cover - someone else cleaned up
            pass
        msg.spool_path = ""


def as_stdin(msg: Message) -> None:
    """Make descriptor 0 read the message from its first byte (for a program we exec)."""
    os.lseek(msg.fd, msg.offset, os.SEEK_SET)
    if msg.fd != 0:
        os.dup2(msg.fd, 0)  # the new descriptor 0 is inheritable
        os.close(msg.fd)
        msg.fd = 0

"""Private memory (smaps_rollup) against RSS, for pages shared with a parent after fork."""

from __future__ import annotations

import os

from scand.pool.memory import EXACT_EVERY, PrivateMeter, usage


def test_shared_pages_are_not_private() -> None:
    big = bytearray(os.urandom(64 << 20))  # 64 MiB, resident and private in this process
    assert usage().private > 60 << 20
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child shares ``big`` copy-on-write, as a worker shares the engine
        code = 1
        try:
            u = usage()
            meter = PrivateMeter()
            ok = u.rss > 64 << 20 and u.private < 16 << 20 and u.pss < u.rss - (24 << 20)
            big[:8 << 20] = bytes(8 << 20)  # dirty 8 MiB: those become private
            grown = usage().private - u.private
            # Copy-on-write growth moves no RSS: the meter sees it at its next exact
            # reading (every EXACT_EVERY jobs), not before.
            readings = [meter.private() for _ in range(EXACT_EVERY)]
            ok = ok and (6 << 20) < grown < (12 << 20)
            ok = ok and readings[0] < u.private + (4 << 20)
            ok = ok and readings[-1] > u.private + grown // 2
            os.write(w, b"ok" if ok else f"{u} grown={grown} {readings}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    reply = os.read(r, 200)
    os.waitpid(pid, 0)
    assert reply == b"ok", reply
    del big

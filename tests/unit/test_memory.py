"""Private memory (smaps_rollup) against RSS, for pages shared with a parent after fork."""

from __future__ import annotations

import gc
import os

from scand.worker.memory import EXACT_EVERY, PrivateMeter, usage


def test_shared_pages_are_not_private() -> None:
    big = bytearray(os.urandom(64 << 20))  # 64 MiB, resident and private in this process
    assert usage().private > 60 << 20
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child shares ``big`` copy-on-write, as a worker shares the engine
        code = 1
        try:
            gc.disable()  # a collection would touch (copy) the parent's objects too
            u = usage()
            meter = PrivateMeter()
            ok = u.rss > 64 << 20 and u.private < 16 << 20 and u.pss < u.rss - (24 << 20)
            for i in range(0, 8 << 20, 4096):  # dirty 8 MiB in place: those become private
                big[i] = 1
            grown = usage().private - u.private
            # Copy-on-write growth moves no RSS: the meter sees it at its next exact
            # reading (every EXACT_EVERY jobs), not before.
            readings = [meter.private() for _ in range(EXACT_EVERY)]
            ok = ok and (7 << 20) < grown < (16 << 20)
            ok = ok and readings[0] < u.private + (4 << 20)
            ok = ok and readings[-1] > u.private + (7 << 20)
            os.write(w, b"ok" if ok else f"{u} grown={grown} {readings}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    reply = os.read(r, 200)
    os.waitpid(pid, 0)
    assert reply == b"ok", reply
    del big

"""privileges.become: the user's own supplementary groups, never root's."""

from __future__ import annotations

import json
import os
import pwd

import pytest

from scand import privileges

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch identity")


def in_child(extra: list[int]) -> dict[str, object]:
    """become(nobody) in a forked child, /etc/group giving nobody the groups ``extra``."""
    entry = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.getgrouplist = lambda name, gid: [gid, *extra]  # type: ignore[assignment]
            privileges.become(privileges.resolve("nobody"))
            os.write(write, json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                                        "groups": sorted(os.getgroups())}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        out = json.loads(fh.read())
    os.waitpid(pid, 0)
    return {**out, "want_uid": entry.pw_uid, "want_gid": entry.pw_gid}


def test_the_users_supplementary_groups_are_kept() -> None:
    got = in_child([4242])
    assert (got["uid"], got["gid"]) == (got["want_uid"], got["want_gid"])
    assert got["groups"] == sorted({got["want_gid"], 4242})


def test_roots_groups_are_dropped() -> None:
    got = in_child([])
    assert got["groups"] == [got["want_gid"]]

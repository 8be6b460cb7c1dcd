"""privileges.become: the user's own supplementary groups, never root's."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

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


def test_a_secret_only_root_can_read_is_refused_at_start(tmp_path: Path) -> None:
    """Read again at each reload as server.user: a root-only file would fail them all."""
    from scand import config as configmod
    from scand.cli import check_rereadable
    from scand.privileges import Identity, PrivilegeError

    secret = tmp_path / "cache.secret"
    secret.write_text("0123456789abcdef0123\n")
    secret.chmod(0o600)
    cfg = configmod.from_mapping({"cache": {"secret_file": str(secret)}})
    me = os.stat(secret).st_uid
    check_rereadable(cfg, None)  # not dropping: nothing to check
    check_rereadable(cfg, Identity(me, 0, "owner"))
    with pytest.raises(PrivilegeError, match=r"cache\.secret_file: .* chown scand"):
        check_rereadable(cfg, Identity(me + 4242, 0, "scand"))

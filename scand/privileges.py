"""Dropping root: resolve ``server.user``/``server.group`` and switch identity.

Stdlib only: the daemon and the worker zygote both use it.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class PrivilegeError(RuntimeError):
    """The configured user or group does not exist, or the switch failed."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str


def resolve(user: str, group: str = "") -> Identity | None:
    """The identity to become, or None when there is nothing to do (no user, not root)."""
    if not user or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    except KeyError:
        raise PrivilegeError(f"server.user: no such user {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"server.group: no such group {group!r}") from None
    return Identity(entry.pw_uid, gid, entry.pw_name)


def become(who: Identity | None) -> None:
    """Switch this process to ``who`` for good.

    The supplementary groups become those /etc/group gives the user (as login,
    systemd's ``User=`` and ``runuser`` do), so ``adduser scand Debian-exim`` lets
    scand read Exim's spool whichever way it was started; root's are dropped.
    """
    if who is None:
        return
    try:
        os.setgroups(os.getgrouplist(who.name, who.gid))
        os.setgid(who.gid)
        os.setuid(who.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to {who.name}: {exc.strerror}") from exc
    if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - defensive
        raise PrivilegeError("still root after setuid")

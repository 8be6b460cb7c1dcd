"""What verdict an engine owes each message, and how a reply is judged against it.

The corpus manifest records what a message *contains* (infections with the
encoding layers around them, banned attachments). What an engine must answer
depends on what it can see: a profile names the layers it decodes and whether
it applies the attachment policy. A reply is then one of:

* ``ok``: the owed verdict (``0`` for clean, ``1:`` for infected or banned);
* ``unchecked``: ``-1:<reason>``; never wrong, the MTA defers (counted by reason);
* ``blind``: an infection the profile says this engine cannot see (it is inside
  a layer the engine does not decode); not judged, counted apart;
* ``miss``: an infected or banned message answered ``0``, or a clean one
  answered ``1:``. Any miss fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALL_LAYERS = frozenset({"base64", "zip", "uuencode"})


@dataclass(frozen=True)
class Profile:
    name: str
    decodes: frozenset[str]
    policy: bool
    about: str


PROFILES = {
    "raw": Profile("raw", frozenset(), False,
                   "reads raw bytes only: no MIME, zip or uuencode decoding, no policy"),
    "mail": Profile("mail", ALL_LAYERS, False,
                    "decodes MIME base64, zip and uuencode; no attachment policy"),
    "mail+policy": Profile("mail+policy", ALL_LAYERS, True,
                           "decodes MIME base64, zip and uuencode, and bans attachments"),
}
# The profile each target is judged by unless --expect names one. "auto" probes a
# scand daemon with canaries (bench/probe.py): the built-in engine reads raw bytes
# only until the MIME/archive walker and the policy (issue 6) land, and issue 6
# gives the policy to scand's clamd engine too. clamd direct decodes mail itself
# and never applies scand's policy: "mail", fixed.
DEFAULT_PROFILE = {"scand": "auto", "clamd": "mail"}

# Outcome kinds
OK, UNCHECKED, BLIND, MISS = "ok", "unchecked", "blind", "miss"


@dataclass(frozen=True)
class Owed:
    """The verdict a message is owed under one profile."""

    kind: str  # "clean" | "infected" | "banned" | "blind" | "crash" | "timeout"
    names: tuple[str, ...] = ()  # signature names a "1:" reply should start with
    unpoliced: bool = False  # holds a banned attachment that this profile does not police


def visible(layers: Iterable[str], profile: Profile) -> bool:
    return set(layers) <= profile.decodes


def owed(message: dict[str, Any], profile: Profile) -> Owed:
    chaos = message.get("chaos")
    if chaos == "crash":
        return Owed("crash")
    if chaos == "hang":
        return Owed("timeout")
    seen = [i for i in message["infections"] if visible(i["layers"], profile)]
    if seen:
        return Owed("infected", tuple(i["name"] for i in seen))
    if message["infections"]:
        return Owed("blind")
    if message["banned"] and profile.policy:
        return Owed("banned", ("Banned.",))
    return Owed("clean", unpoliced=bool(message["banned"]))


@dataclass(frozen=True)
class Judged:
    outcome: str  # OK | UNCHECKED | BLIND | MISS
    verdict: str  # "clean" | "infected" | "banned" | "unchecked:<reason>" | "garbled"
    note: str = ""  # why a miss is a miss; "wrong-name" when 1: carries an unexpected name


def classify(reply: bytes) -> tuple[str, str]:
    """A Sophie reply line (no LF) as (verdict word, name or reason)."""
    if reply == b"0":
        return "clean", ""
    if reply.startswith(b"1:") and len(reply) > 2:
        name = reply[2:].decode("utf-8", "replace")
        return ("banned" if name.startswith("Banned.") else "infected"), name
    if reply.startswith(b"-1"):
        reason = reply[3:].decode("utf-8", "replace").split(" ", 1)[0] or "unspecified"
        return "unchecked", reason
    return "garbled", reply[:60].decode("utf-8", "replace")


def judge(expect: Owed, reply: bytes) -> Judged:
    word, detail = classify(reply)
    if word == "garbled":
        return Judged(MISS, word, f"not a verdict: {detail!r}")
    if word == "unchecked":
        return Judged(UNCHECKED, f"unchecked:{detail}")
    if expect.kind in ("crash", "timeout"):  # a scan that never finished can only be -1
        return Judged(MISS, word, f"a {expect.kind} scan answered {word}")
    if expect.kind == "blind":
        return Judged(BLIND, word)
    if expect.kind == "clean":
        if word == "clean":
            return Judged(OK, word)
        if expect.unpoliced and word == "banned":
            return Judged(MISS, word, f"answered 1:{detail}, but the profile applies no policy "
                                      "(see --expect)")
        return Judged(MISS, word, f"clean message answered 1:{detail}")
    if word == "clean":
        return Judged(MISS, word, f"{expect.kind} message answered 0")
    wrong = not any(detail.startswith(n) for n in expect.names)
    return Judged(OK, word, "wrong-name" if wrong else "")

"""``--expect auto``: find out what a scand daemon decodes, before the run, with canaries.

One canary per infection variant (EICAR and clam.exe, in base64, zip, uuencode
and raw), one banned-but-clean message and one clean message, spooled like the
corpus and sent through the same target as the run. A layer counts as decoded
only if *every* canary that hides behind it was detected (layers are proven
from the inside out), so a walker that decodes uuencode but mangles the
bytes (and so misses clam.exe's hash) is judged as not decoding uuencode, and
the report says which canary failed.
The policy counts as on if the banned canary was answered ``1:Banned.``.

The result is printed and stored in the summary: a run judged by a probed
profile says so, so a regression cannot hide as a quieter profile. For the
published figures, name the profile (``--expect mail+policy``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import corpus
from bench.targets import ScandTarget, TargetError
from bench.verdicts import ALL_LAYERS, Profile, classify

CANARY_INDEX = 30_000_000


def canaries(directory: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Spool the canaries; key -> manifest entry."""
    out: dict[str, dict[str, Any]] = {}
    for slot, (key, *_rest) in enumerate(corpus.INFECTED_VARIANTS):
        msg = corpus.build(CANARY_INDEX + slot, seed, "infected", slot)
        out[key] = write(directory, f"canary/{key}.eml", msg)
    out["banned"] = write(directory, "canary/banned.eml",
                          corpus.build(CANARY_INDEX + 50, seed, "banned", 0))
    out["clean"] = write(directory, "canary/clean.eml",
                         corpus.build(CANARY_INDEX + 51, seed, "clean", 0))
    return out


def write(directory: Path, rel: str, msg: corpus.Message) -> dict[str, Any]:
    corpus.write_file(directory / rel, msg.data)
    return corpus.entry(msg, rel)


def ask(target: ScandTarget, path: str) -> bytes:
    for _ in range(3):  # a -1:busy is not an answer about decoding: ask again
        try:
            reply = target.scan(path)
        except TargetError as exc:
            reply = f"-1:error {exc}".encode()
        if not reply.startswith(b"-1"):
            return reply
    return reply


def proven_layers(results: dict[str, tuple[set[str], bool]]) -> set[str]:
    """Layers shown decoded: every canary that needs a layer (and only proven others) hit.

    Built up from the inside out, so a failing zip canary (base64 + zip) blames
    zip when the plain base64 canaries passed, not base64.
    """
    proven: set[str] = set()
    changed = True
    while changed:
        changed = False
        for layer in sorted(ALL_LAYERS - proven):
            needs = [hit for layers, hit in results.values()
                     if layer in layers and layers - {layer} <= proven]
            if needs and all(needs):
                proven.add(layer)
                changed = True
    return proven


def probe(socket: str, transfer: str, directory: Path, seed: int) -> tuple[Profile, dict[str, str]]:
    """The profile a scand daemon earns from the canaries, and each canary's reply."""
    entries = canaries(directory, seed)
    base = directory.resolve()
    target = ScandTarget(socket, transfer, persistent=True, timeout=60.0)
    try:
        replies = {key: ask(target, str(base / e["path"])) for key, e in entries.items()}
    finally:
        target.close()
    words = {key: classify(r)[0] for key, r in replies.items()}
    if words["clean"] != "clean":
        raise RuntimeError(f"the clean canary was answered {replies['clean']!r}: "
                           "nothing can be judged against this daemon")
    if words["eicar-raw"] != "infected":
        raise RuntimeError(f"EICAR in plain text was answered {replies['eicar-raw']!r}")
    decodes = proven_layers({key: (set(layers), words[key] == "infected")
                             for key, _sig, _name, layers in corpus.INFECTED_VARIANTS})
    policy = words["banned"] == "banned"
    name = "mail" if decodes == ALL_LAYERS else "+".join(sorted(decodes)) or "raw"
    profile = Profile(f"auto({name}{', policy' if policy else ''})", frozenset(decodes),
                      policy, "probed with canaries before the run")
    return profile, {k: r.decode("utf-8", "replace") for k, r in replies.items()}

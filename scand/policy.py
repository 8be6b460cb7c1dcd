"""Banned-attachment policy: rules as data (``[policy]``), checks as pure functions.

Rules, in the order they are tried (the first hit names the verdict):

* ``CLSID``: a ``{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`` extension, which makes
  Windows pick the handler by class id whatever the visible extension says;
* ``DoubleExtension``: a letter-bearing extension followed by a banned one,
  trailing dots and spaces tolerated (``invoice.pdf.pif``, ``a.doc.exe .``),
  as amavisd does it; ``cid:`` names (Content-ID references) are exempt
  from this rule only;
* ``Extension``: the last extension is banned (``.exe``, ``.vbs``, ...);
* ``MimeType``: the declared Content-Type is banned;
* ``RawName`` (off by default): a ``name.ext`` phrase with a banned extension
  anywhere in the raw message.

A hit is ``Infected("Banned.<Rule>.<detail>")``: never empty, no spaces.
Every rule has its own exception list of case-insensitive glob patterns.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from scand.config import PolicyConfig
from scand.events import Infected

_CLSID = re.compile(r"\.\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$",
                    re.IGNORECASE)
# Extensions the RawName rule ignores: in free text they are domains.
RAW_SKIP = frozenset({"com"})
# Characters a detail may not carry into a reply: whitespace and control bytes.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]+")
# Control characters inside a name (C0, DEL, C1 and the Unicode format marks).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# The same characters as a str.translate table (removing them with re.sub would
# keep a piece per character of a name made of thousands of them).
_CONTROL_DROP = dict.fromkeys([*range(0x00, 0x20), *range(0x7f, 0xa0), *range(0x200b, 0x2010),
                               *range(0x202a, 0x202f), *range(0x2060, 0x2065), 0xfeff])


def _basename(name: str) -> str:
    """What follows the last / or \\ (no list of the pieces)."""
    return name[max(name.rfind("/"), name.rfind("\\")) + 1 :]


def _clean_name(name: str) -> str:
    """The name as Windows would use it: no path, no trailing dots or spaces."""
    return _basename(name).rstrip(". \t\r\n\x00")


def _name_variants(name: str) -> list[str]:
    """The name; cut at its first control character, and with them removed; and
    without an NTFS stream suffix."""
    out = [name]
    if _CONTROL.search(name):
        out.append(_CONTROL.split(name, 1)[0])
        out.append(name.translate(_CONTROL_DROP))
    base = _basename(name)
    if ":" in base:  # an NTFS stream ("evil.exe::$DATA", "a.exe:x") opens the file
        out.append(base.split(":", 1)[0])
    return out


def _extensions(name: str) -> list[str]:
    """The last two extensions of a cleaned name, last one last: "a.pdf.exe" ->
    ["pdf", "exe"] (the rules look at no others)."""
    pieces = name.rsplit(".", 2)
    return [p.strip().lower() for p in pieces[1:]] if len(pieces) > 1 else []


def _exempt(name: str, patterns: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def _hit(rule: str, detail: str) -> Infected:
    detail = _UNSAFE.sub("_", detail).strip("_") or "unnamed"
    return Infected(f"Banned.{rule}.{detail}"[:200])


class Policy:
    """The compiled ``[policy]`` section."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        self.banned = frozenset(e.lower() for e in cfg.extensions)
        self.mime_types = frozenset(t.lower() for t in cfg.mime_types)
        # ".com" in running text is nearly always a domain name, not an attachment.
        raw_exts = self.banned - RAW_SKIP
        exts = "|".join(sorted((re.escape(e) for e in raw_exts), key=len, reverse=True))
        pattern = rf"(?<![\w.-])[\w-][\w .()-]{{0,80}}?\.({exts})(?![\w-]|\.[\w-])"
        self._raw = re.compile(pattern.encode(), re.IGNORECASE) if exts else None

    def check_name(self, name: str) -> Infected | None:
        """The first rule a part name breaks, or None.

        A name is checked as given and as a client might cut it: at a NUL or
        other control character (C strings end there; some clients drop the
        character instead), so nothing after one can hide the extension."""
        if not self.cfg.enabled or not name:
            return None
        for variant in _name_variants(name):
            hit = self._check_one(variant)
            if hit is not None:
                return hit
        return None

    def _check_one(self, name: str) -> Infected | None:
        cfg = self.cfg
        # A cid: reference names an inline part by its Content-ID, whose dots are
        # not extensions: it is exempt from the double-extension rule only.
        cid = name.lower().startswith("cid:")
        clean = _clean_name(name[4:] if cid else name)
        if cfg.clsid and _CLSID.search(clean) and not _exempt(clean, cfg.clsid_exceptions):
            return _hit("CLSID", clean.rsplit(".", 1)[1])
        exts = _extensions(clean)
        if not exts:
            return None
        last = exts[-1]
        if last not in self.banned:
            return None
        if (cfg.double_extension and not cid and len(exts) >= 2
                and re.search("[a-z]", exts[-2])
                and not _exempt(clean, cfg.double_extension_exceptions)):
            return _hit("DoubleExtension", f"{exts[-2]}.{last}")
        if not _exempt(clean, cfg.extension_exceptions):
            return _hit("Extension", last)
        return None

    def check_part(self, names: Iterable[str], mime_type: str, in_archive: bool) -> Infected | None:
        """Check every name of a part, then its declared type."""
        cfg = self.cfg
        if not cfg.enabled or (in_archive and not cfg.archives):
            return None
        for name in names:
            hit = self.check_name(name)
            if hit is not None:
                return hit
        shown = next(iter(names), "")
        if (mime_type in self.mime_types
                and not _exempt(_clean_name(shown) or mime_type, cfg.mime_type_exceptions)):
            return _hit("MimeType", mime_type)
        return None

    def check_encrypted(self, name: str) -> Infected:
        return _hit("Encrypted", _clean_name(name) or "member")

    def check_raw(self, data: bytes) -> Infected | None:
        """The seed admin's trick (``raw_names``): banned ``name.ext`` phrases anywhere."""
        if not self.cfg.enabled or not self.cfg.raw_names or self._raw is None:
            return None
        for match in self._raw.finditer(data):
            phrase = match.group(0).decode("latin-1").strip()
            if not _exempt(phrase, self.cfg.raw_name_exceptions):
                return _hit("RawName", match.group(1).decode("latin-1").lower())
        return None

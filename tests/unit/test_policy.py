"""Policy rules as pure functions: names, types, exceptions, raw-name option."""

from __future__ import annotations

import pytest

from scand import config as cm
from scand.config import Config, PolicyConfig
from scand.events import Infected
from scand.policy import Policy

P = Policy(PolicyConfig())


@pytest.mark.parametrize(("name", "expected"), [
    ("a.exe", "Banned.Extension.exe"),
    ("invoice.pdf.pif", "Banned.DoubleExtension.pdf.pif"),
    ("invoice.pdf.pif.", "Banned.DoubleExtension.pdf.pif"),
    ("invoice.pdf.pif . .", "Banned.DoubleExtension.pdf.pif"),
    ("invoice.pdf .exe", "Banned.DoubleExtension.pdf.exe"),
    ("backup.2024.exe", "Banned.Extension.exe"),  # "2024" has no letter: not a double ext
    ("x.{00020C01-0000-0000-C000-000000000046}",
     "Banned.CLSID.{00020C01-0000-0000-C000-000000000046}"),
    ("dir/sub\\evil.vbs", "Banned.Extension.vbs"),
    ("report.exe.txt", None),
    ("cid:part1.exe@x", None),
    ("report.docx", None),
    ("exe", None),
    ("", None),
])
def test_names(name: str, expected: str | None) -> None:
    hit = P.check_name(name)
    assert (hit.name if hit else None) == expected
    if hit:
        assert " " not in hit.name and hit.name


def test_mime_types_and_archives() -> None:
    assert P.check_part(["x.bin"], "application/x-msdownload", False) == Infected(
        "Banned.MimeType.application/x-msdownload")
    assert P.check_part(["ok.txt"], "text/plain", False) is None
    no_archives = Policy(PolicyConfig(archives=False))
    assert no_archives.check_part(["a.exe"], "", True) is None
    assert no_archives.check_part(["a.exe"], "", False) is not None


def test_exceptions_are_per_rule() -> None:
    cfg = cm.override(Config(), "policy", extension_exceptions=["setup-*.msi"]).policy
    p = Policy(cfg)
    assert p.check_name("setup-4.2.msi") is None
    assert p.check_name("other.msi") == Infected("Banned.Extension.msi")
    # the Extension exception does not excuse a double extension
    assert p.check_name("setup-x.pdf.msi") == Infected("Banned.DoubleExtension.pdf.msi")


def test_raw_names_off_by_default_and_on() -> None:
    raw = b"Subject: hi\n\nplease run update.exe now\n"
    assert P.check_raw(raw) is None
    on = Policy(PolicyConfig(raw_names=True))
    assert on.check_raw(raw) == Infected("Banned.RawName.exe")
    assert on.check_raw(b"see example.com and www.exe-files.org") is None


def test_disabled() -> None:
    assert Policy(PolicyConfig(enabled=False)).check_name("a.exe") is None

"""Issue 12 acceptance 1: the evasion corpus, exact verdicts through the real daemon.

Every case of tests/content/evasion_cases.py goes through a real ``scand serve``
as a Sophie ``STREAM`` request, batched on one connection per daemon:

* the built-in engine: the reply must fall in the case's expected classes;
* the clamd engine (a managed clamd with an EICAR-only test signature set, next
  to scand's names-only policy walk): never ``0`` where the built-in engine
  expects a finding, exactly ``0`` for the look-alikes;
* the clamav engine (libclamav in the workers, same signatures), with each
  ``clamav.mail_parser``: the walker's parts handed to libclamav (``scand``) and
  libclamav's own mail parser beside the names-only walk (``libclamav``), and the
  walker's parts with a phishing list loaded (``scand-phish``: each text part in
  a minimal message, with libclamav's mail parser on): as clamd.

No reply may ever be ``-1:internal``. The corpus itself is checked too: sizes
per family, no raw EICAR anywhere, and the recorded clamscan results
(evasion_clamscan.json, written by make_evasion_clamscan.py) cover every case.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, launch
from tests.content.evasion_cases import (
    BANNED,
    CLEAN,
    EICAR,
    FAMILIES,
    UNCHECKED,
    VIRUS,
    Case,
    all_cases,
    matches,
)

CASES = all_cases()
IDS = [c.id for c in CASES]
HERE = Path(__file__).resolve().parent
CLAMSCAN_JSON = HERE / "evasion_clamscan.json"
CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")


# -- the corpus itself ---------------------------------------------------------------

def test_corpus_size_and_families() -> None:
    per_family = Counter(c.family for c in CASES)
    assert set(per_family) == set(FAMILIES), per_family
    assert all(n >= 2 for n in per_family.values()), per_family
    assert sum(1 for c in CASES if c.evasion) >= 130
    assert per_family["look-alike"] >= 35
    assert len(set(IDS)) == len(IDS), [i for i, n in Counter(IDS).items() if n > 1]


def test_no_payload_is_reachable_by_a_byte_search() -> None:
    """An evasion that leaves EICAR in plain sight proves nothing."""
    plain = [c.id for c in CASES if EICAR in c.message]
    assert not plain
    assert all(c.payload in ("eicar", "both") for c in CASES if c.expected == {VIRUS})


def test_expected_classes_are_well_formed() -> None:
    for case in CASES:
        assert case.expected, case.id
        for cls in case.expected:
            assert cls in (VIRUS, CLEAN) or cls.startswith((BANNED, UNCHECKED)), (case.id, cls)
        if case.evasion:
            assert CLEAN not in case.expected, case.id
            # unchecked only where no reading reaches the payload: never on its own
            # for a payload a walker can decode.
        else:
            assert case.expected == {CLEAN} and case.payload == "none", case.id


def test_matches() -> None:
    assert matches("1:Eicar-Test-Signature", frozenset({VIRUS}))
    assert not matches("1:Banned.Extension.exe", frozenset({VIRUS}))
    assert matches("1:Banned.Extension.exe", frozenset({BANNED + "Extension.exe"}))
    assert not matches("1:Banned.Extension.exe", frozenset({BANNED + "DoubleExtension"}))
    assert matches("-1:unreadable x", frozenset({UNCHECKED}))
    assert not matches("-1:unreadable x", frozenset({UNCHECKED + "encrypted"}))
    assert matches("0", frozenset({CLEAN})) and not matches("0", frozenset({VIRUS}))


def _clamscan_record() -> dict[str, object]:
    data: dict[str, object] = json.loads(CLAMSCAN_JSON.read_text())
    return data


def test_clamscan_record_covers_the_corpus() -> None:
    """What clamscan (EICAR-only database) says, recorded per case: same ids, and no
    case where clamscan finds EICAR is expected clean by scand."""
    record = _clamscan_record()
    results = record["results"]
    assert isinstance(results, dict)
    assert sorted(results) == sorted(IDS), "run tests/content/make_evasion_clamscan.py"
    for case in CASES:
        said = results[case.id]
        assert said == "OK" or said.startswith(("FOUND ", "ERROR")), (case.id, said)
        if said.startswith("FOUND"):
            assert case.expected != {CLEAN}, (case.id, said)
    assert all(results[c.id] == "OK" for c in CASES if not c.evasion)


# -- through the daemon ---------------------------------------------------------------

def _ask_all(daemon: Daemon) -> dict[str, str]:
    """Every case as a STREAM request on one connection; replies without LF."""
    client = daemon.client(timeout=60)
    try:
        out = {}
        for case in CASES:
            reply = client.ask(b"STREAM %d\n" % len(case.message) + case.message)
            out[case.id] = reply.decode("utf-8", "replace").rstrip("\n")
        return out
    finally:
        client.close()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="scand-ev-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def builtin_replies(workdir: Path) -> dict[str, str]:
    daemon = launch(workdir, 0, workers=2)
    try:
        return _ask_all(daemon)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def clamd_replies(workdir: Path) -> dict[str, str]:
    assert CLAMD, "clamd not installed: run ./scripts/test (installs clamav-daemon)"
    sigs = workdir / "sigs"
    sigs.mkdir()
    (sigs / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    daemon = launch(workdir, 1, "--engine", "clamd", "--signatures", str(sigs), workers=2,
                    ready_timeout=90)
    try:
        return _ask_all(daemon)
    finally:
        daemon.stop()


@pytest.fixture(scope="module", params=["scand", "libclamav", "scand-phish"])
def clamav_replies(request: pytest.FixtureRequest, workdir: Path) -> dict[str, str]:
    """``scand-phish``: with a phishing list, so every text part of a message is
    handed in its minimal-message form (scand.engines.clamav.urlcheck)."""
    mode, _, phish = request.param.partition("-")
    sigs = workdir / f"sigs-clamav{'-phish' if phish else ''}"
    sigs.mkdir(exist_ok=True)
    (sigs / "test.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    if phish:
        (sigs / "test.pdb").write_text("H:example.com\n")
    n = {"scand": 2, "libclamav": 3, "scand-phish": 4}[request.param]
    daemon = launch(workdir, n, "--engine", "clamav", "--signatures", str(sigs), workers=2,
                    config=f'[clamav]\nmail_parser = "{mode}"\n', ready_timeout=90)
    try:
        return _ask_all(daemon)
    finally:
        daemon.stop()


def _case(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


@pytest.mark.parametrize("case_id", IDS)
def test_builtin(builtin_replies: dict[str, str], case_id: str) -> None:
    case = _case(case_id)
    got = builtin_replies[case_id]
    assert not got.startswith("-1:internal"), got
    assert matches(got, case.expected), f"{case.description}: expected {sorted(case.expected)}"


@pytest.mark.parametrize("case_id", IDS)
def test_clamd(clamd_replies: dict[str, str], case_id: str) -> None:
    _never_clean(clamd_replies, case_id)


def _never_clean(replies: dict[str, str], case_id: str) -> None:
    case = _case(case_id)
    got = replies[case_id]
    assert not got.startswith("-1:internal"), got
    assert matches(got, case.expected_clamd()), (
        f"{case.description}: expected {sorted(case.expected_clamd())}")


@pytest.mark.parametrize("case_id", IDS)
def test_clamav(clamav_replies: dict[str, str], case_id: str) -> None:
    _never_clean(clamav_replies, case_id)


def test_no_banned_reply_for_virus_only_cases(builtin_replies: dict[str, str]) -> None:
    """Where only a signature is right, the built-in engine must name the signature."""
    wrong = {c.id: builtin_replies[c.id] for c in CASES if c.expected == {VIRUS}
             and not builtin_replies[c.id].startswith("1:Eicar-Test-Signature")}
    assert not wrong


# -- clamscan, re-checked ----------------------------------------------------------------

@pytest.mark.slow
def test_clamscan_record_still_holds(tmp_path: Path) -> None:
    """Re-run Debian's clamscan on a sample and compare with the recorded answers."""
    from tests.content.make_evasion_clamscan import run_clamscan

    if shutil.which("clamscan") is None:
        pytest.fail("clamscan not installed: run ./scripts/test (installs clamav)")
    record = _clamscan_record()["results"]
    assert isinstance(record, dict)
    sample = CASES[::7]
    try:
        fresh = run_clamscan(sample, tmp_path)
    except subprocess.CalledProcessError as exc:  # pragma: no cover - shown on failure
        pytest.fail(f"clamscan failed: {exc.stderr!r}")
    assert {c.id: fresh[c.id] for c in sample} == {c.id: record[c.id] for c in sample}

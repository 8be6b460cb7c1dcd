"""A real Postfix 3.7 (Debian 12's package, unpacked privately: tests/mta/postfix.py) with
scand as its milter, driven over SMTP on loopback.

Clean mail is delivered byte-intact apart from the added headers (Postfix's
pipe(8) writes LF line ends, so the comparison is on LF-normalized text);
EICAR and a banned attachment get 554 during the session and nothing is
queued; with scand stopped the client gets 4xx and nothing is queued, and the
same message is delivered once scand is back (milter_default_action = tempfail).
"""

from __future__ import annotations

import json
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, launch
from tests.milter.mail import CLEAN_PDF, EICAR, EICAR_NAME, as_rfc822, message
from tests.mta import postfix as pfmod
from tests.mta.postfix import Postfix, start_postfix

why = pfmod.available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(why is not None, reason=why or "")]

SCAND_CONFIG = """
[milter]
socket_group = "nogroup"
socket_mode = "0660"
spill_bytes = 65536
add_headers = true
"""
ADDED = ("received", "x-virus-scanned", "x-virus-status")


def start_scand(workdir: Path, n: int) -> Daemon:
    return launch(workdir, n, "--milter-socket", str(workdir / "m"), config=SCAND_CONFIG)


@pytest.fixture
def mta(short_tmp: Path) -> Iterator[tuple[Postfix, list[Daemon]]]:
    daemons = [start_scand(short_tmp, 0)]
    pf = start_postfix(short_tmp / "postfix", main_extra=(
        f"smtpd_milters = unix:{short_tmp}/m\n"
        "non_smtpd_milters = $smtpd_milters\n"
        "milter_default_action = tempfail\n"
        "milter_protocol = 6\n"))
    try:
        yield pf, daemons
    finally:
        pf.stop()
        for d in daemons:
            d.stop()


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """(header lines, body) of an LF message; folded lines stay with their header."""
    head, _, body = raw.partition(b"\n\n")
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    return fields, body


def milter_lines(d: Daemon) -> list[dict[str, object]]:
    rows = [json.loads(x) for x in d.log().splitlines() if x.startswith("{")]
    return [r for r in rows if r.get("event") == "milter_message"]


def test_clean_delivered_intact_viruses_and_banned_rejected_in_session(
        mta: tuple[Postfix, list[Daemon]]) -> None:
    pf, daemons = mta
    clean = as_rfc822(*message("pf-clean", "report.pdf", CLEAN_PDF))
    big = as_rfc822(*message("pf-big", "report.pdf", CLEAN_PDF, filler=1_500_000))
    infected = as_rfc822(*message("pf-eicar", "eicar.bin", EICAR))
    banned = as_rfc822(*message("pf-banned", "invoice.pdf.exe", b"MZ harmless"))
    s = pf.smtp()
    try:
        # several messages on one SMTP session: Postfix aborts the milter between them
        assert s.sendmail("alice@example.org", ["bob@example.net"], clean) == {}
        with pytest.raises(smtplib.SMTPDataError) as virus:
            s.sendmail("alice@example.org", ["bob@example.net"], infected)
        with pytest.raises(smtplib.SMTPDataError) as ban:
            s.sendmail("alice@example.org", ["bob@example.net"], banned)
        assert s.sendmail("alice@example.org", ["bob@example.net"], big) == {}
    finally:
        s.quit()
    assert virus.value.smtp_code == 554
    assert virus.value.smtp_error.decode() == f"5.7.1 Message rejected: {EICAR_NAME}"
    assert ban.value.smtp_code == 554
    assert b"Banned.DoubleExtension.pdf.exe" in ban.value.smtp_error
    got = pf.wait_delivered(2)
    assert len(got) == 2 and not pf.queued()
    for sent in (clean, big):
        want_fields, want_body = split(sent.replace(b"\r\n", b"\n"))
        (raw,) = [r for qid, r in got.items() if want_fields[4] in r]  # the Message-ID line
        fields, body = split(raw)
        assert body == want_body
        assert [f for f in fields if f.split(b":")[0].lower().decode() not in ADDED] == want_fields
        assert b"X-Virus-Status: Clean" in fields
    # scand's log names Postfix's queue ids and the Message-IDs
    logged = {str(r["queue_id"]): r for r in milter_lines(daemons[0])}
    for qid in got:
        assert logged[qid]["verdict"] == "clean"
    verdicts = sorted(str(r["verdict"]) for r in logged.values())
    assert verdicts == ["clean", "clean", "infected", "infected"]
    assert {str(r["message_id"]) for r in logged.values()} >= {"<pf-eicar@example.org>"}
    assert "milter-reject: END-OF-MESSAGE" in pf.log()


def test_scand_down_gives_4xx_and_mail_is_delivered_when_it_is_back(
        mta: tuple[Postfix, list[Daemon]], short_tmp: Path) -> None:
    pf, daemons = mta
    daemons[0].stop()
    mail = as_rfc822(*message("pf-outage", "report.pdf", CLEAN_PDF))
    s = pf.smtp()
    with pytest.raises(smtplib.SMTPResponseException) as refused:
        s.sendmail("alice@example.org", ["bob@example.net"], mail)
    s.close()
    assert 400 <= refused.value.smtp_code < 500, refused.value
    assert pf.delivered() == {} and pf.queued() == []  # not accepted: the sender keeps it
    daemons.append(start_scand(short_tmp, 1))
    s = pf.smtp()  # the sending MTA's retry
    assert s.sendmail("alice@example.org", ["bob@example.net"], mail) == {}
    s.quit()
    (raw,) = pf.wait_delivered(1).values()
    assert split(raw)[1] == split(mail.replace(b"\r\n", b"\n"))[1]


def test_local_submission_is_scanned_through_non_smtpd_milters(short_tmp: Path) -> None:
    """Mail from sendmail(1) (pickup -> cleanup) goes through non_smtpd_milters too; a
    virus submitted that way is not delivered and the local sender gets a bounce."""
    d = start_scand(short_tmp, 0)
    pf = start_postfix(short_tmp / "postfix", installed=True, main_extra=(
        f"smtpd_milters = unix:{short_tmp}/m\nnon_smtpd_milters = $smtpd_milters\n"
        "milter_default_action = tempfail\n"))
    try:
        clean = as_rfc822(*message("local-clean"))
        virus = as_rfc822(*message("local-eicar", "eicar.bin", EICAR))
        for mail in (clean, virus):
            r = subprocess.run(["nsenter", "--target", str(pf.proc.pid), "--mount", "--",
                                "/usr/sbin/sendmail", "-f", "alice@example.org", "-i",
                                "bob@example.net"], input=mail, capture_output=True,
                               timeout=60, check=False)
            assert r.returncode == 0, r.stderr
        got = pf.wait_delivered(2)
        (delivered,) = [r for r in got.values() if b"<local-clean@example.org>" in r]
        # the virus is not delivered: Postfix bounces it to the local sender, headers only
        (bounce,) = [r for r in got.values() if r is not delivered]
        assert b"To: alice@example.org" in bounce
        assert f"Message rejected: {EICAR_NAME}".encode() in bounce
        assert b"text/rfc822-headers" in bounce and b"eicar.bin" not in bounce
        verdicts = sorted(str(r["verdict"]) for r in milter_lines(d))
        assert verdicts == ["clean", "infected"]
        assert "status=bounced (Message rejected: Eicar-Test-Signature)" in pf.log()
    finally:
        pf.stop()
        d.stop()

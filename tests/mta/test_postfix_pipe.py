"""The pipe(8) + scand-pipe recipe exactly as docs/CLIENTS.md gives it, on a real Postfix 3.7.

The master.cf lines are read from the document; only the filter user (``daemon``
here instead of ``scand-filter``) and the socket path are replaced. Postfix runs
"installed" in a private mount namespace (tests/mta/postfix.py), so scand-pipe's
``/usr/sbin/sendmail`` reinjection goes through Postfix's own sendmail, postdrop
and pickup. Clean mail is delivered, a virus is discarded as documented, and
during an outage the message is deferred and delivered by ``postqueue -f``
once scand is back.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from clients import build
from tests.conftest import Daemon, launch
from tests.milter.mail import CLEAN_PDF, EICAR, as_rfc822, message
from tests.mta import postfix as pfmod
from tests.mta.postfix import Postfix, start_postfix

why = pfmod.available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(why is not None, reason=why or "")]

REPO = Path(__file__).resolve().parents[2]
SCAND_CONFIG = '[server]\nsocket_group = "daemon"\n'


def documented_recipe() -> tuple[str, str]:
    """(the -o line under smtpd, the scand service) from the pipe(8) recipe in the docs."""
    doc = (REPO / "docs/CLIENTS.md").read_text()
    section = doc[doc.index("## Postfix: pipe(8)"):]
    block = re.search(r"```\n(smtp +inet.*?)```", section, re.S)
    assert block, "no master.cf block in the pipe(8) recipe"
    lines = block.group(1).splitlines()
    assert lines[1].strip() == "-o content_filter=scand:dummy"
    service = "\n".join(lines[2:]) + "\n"
    assert "user=scand-filter" in service and "--socket /var/run/sophie" in service
    return lines[1] + "\n", service


def wait_log(pf: Postfix, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while needle not in pf.log():
        assert time.monotonic() < deadline, f"{needle!r} not in:\n{pf.log()}"
        time.sleep(0.1)


def test_pipe_recipe_as_documented(short_tmp: Path) -> None:
    daemons: list[Daemon] = [launch(short_tmp, 0, config=SCAND_CONFIG)]
    smtpd_option, service = documented_recipe()
    service = service.replace("user=scand-filter", "user=daemon").replace(
        "/var/run/sophie", daemons[0].socket)
    base = short_tmp / "postfix"
    (base / "usr/local/bin").mkdir(parents=True)
    # The single file an admin installs (docs/CLIENTS.md: python3 -m clients.build).
    built = {p.name: p for p in build.build(short_tmp / "clients")}
    shutil.copy(built["scand-pipe"], base / "usr/local/bin/scand-pipe")
    (base / "usr/local/bin/scand-pipe").chmod(0o755)
    # No automatic retries: only the documented `postqueue -f` may deliver deferred mail.
    pf = start_postfix(base, installed=True, smtpd_options=smtpd_option, master_extra=service,
                       main_extra="queue_run_delay = 300s\nminimal_backoff_time = 300s\n")
    try:
        clean = as_rfc822(*message("pipe-clean", "report.pdf", CLEAN_PDF))
        virus = as_rfc822(*message("pipe-eicar", "eicar.bin", EICAR))
        s = pf.smtp()
        assert s.sendmail("alice@example.org", ["bob@example.net"], clean) == {}
        assert s.sendmail("alice@example.org", ["bob@example.net"], virus) == {}  # 250: too late
        s.quit()
        (raw,) = pf.wait_delivered(1).values()
        assert raw.endswith(clean.replace(b"\r\n", b"\n").partition(b"\n\n")[2])
        assert raw.count(b"Received: ") == 2  # smtpd, then the reinjection through pickup
        wait_log(pf, "relay=scand")
        time.sleep(1)
        assert len(pf.delivered()) == 1  # the virus was discarded, as documented
        assert pf.log().count("relay=scand") == 2 and "status=sent" in pf.log()

        daemons[0].stop()  # outage: the filter exits 75, Postfix defers
        outage = as_rfc822(*message("pipe-outage", "report.pdf", CLEAN_PDF))
        s = pf.smtp()
        assert s.sendmail("alice@example.org", ["bob@example.net"], outage) == {}
        s.quit()
        wait_log(pf, "status=deferred")
        assert len(pf.delivered()) == 1 and pf.queued()
        daemons.append(launch(short_tmp, 0, config=SCAND_CONFIG))  # same socket path
        flushed = pf.command("/usr/sbin/postqueue", "-f")
        assert flushed.returncode == 0, flushed
        got = pf.wait_delivered(2)
        assert any(b"<pipe-outage@example.org>" in r for r in got.values())
        # The queue file goes a moment after the delivery is written (a race under load).
        deadline = time.monotonic() + 10
        while pf.queued() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pf.queued()
    finally:
        pf.stop()
        for d in daemons:
            d.stop()

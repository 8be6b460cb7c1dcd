"""scand's milter driven by Debian's miltertest: the MTA side of the protocol, scripted in Lua.

One daemon (built-in engine, 2 workers, spill size 4 KiB, status headers on)
serves the scenarios of issue 16's first acceptance item; saturation and an
unreachable engine get daemons of their own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, launch
from tests.milter.mail import CLEAN_PDF, EICAR, EICAR_NAME, message
from tests.milter.miltertest import MilterScript, needs_miltertest

pytestmark = needs_miltertest

SPILL = 4096
CONFIG = f"""
[milter]
spill_bytes = {SPILL}
add_headers = true
progress_interval = 0.5
spool_dir = "{{spool}}"
"""
REJECT = f'"554", "5.7.1", "Message rejected: {EICAR_NAME}"'


BANNED = '"554", "5.7.1", "Message rejected: Banned.DoubleExtension.pdf.exe"'


def smtp_check(tag: str, args: str) -> str:
    return f'mt.echo("RESULT {tag}-smtp " .. tostring(mt.eom_check(c, MT_SMTPREPLY, {args})))\n'


def milter_log(daemon: Daemon) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in daemon.log().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "milter_message"]


@pytest.fixture(scope="module")
def milterd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = Path(os.path.realpath("/tmp")) / f"scand-mt-{os.getpid()}"
    workdir.mkdir()
    spool = workdir / "spool"
    daemon = launch(workdir, 0, "--milter-socket", str(workdir / "m"),
                    config=CONFIG.format(spool=spool))
    yield daemon
    daemon.stop()
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def script(milterd: Daemon, tmp_path: Path) -> MilterScript:
    return MilterScript(tmp_path, str(milterd.workdir / "m"))


def test_negotiation_skips_every_step_but_headers_body_and_eom(script: MilterScript) -> None:
    out = script.run("""
c = connect()
check(mt.negotiate(c, nil, nil, nil), "negotiate")
for _, opt in ipairs({"NOCONNECT", "NOHELO", "NOMAIL", "NORCPT", "NODATA", "NOUNKNOWN",
                      "NOEOH", "NR_HDR", "NR_BODY", "NOHDRS", "NOBODY"}) do
  mt.echo("RESULT " .. opt .. " " .. tostring(mt.test_option(c, _G["SMFIP_" .. opt])))
end
mt.echo("RESULT ADDHDRS " .. tostring(mt.test_action(c, SMFIF_ADDHDRS)))
mt.echo("RESULT QUARANTINE " .. tostring(mt.test_action(c, SMFIF_QUARANTINE)))
mt.echo("RESULT CHGBODY " .. tostring(mt.test_action(c, SMFIF_CHGBODY)))
local ok = pcall(mt.conninfo, c, "relay.example", "192.0.2.1")
mt.echo("RESULT conninfo-refused " .. tostring(not ok))
mt.disconnect(c)
""")
    for skipped in ("NOCONNECT", "NOHELO", "NOMAIL", "NORCPT", "NODATA", "NOUNKNOWN", "NOEOH",
                    "NR_HDR", "NR_BODY", "ADDHDRS", "QUARANTINE", "conninfo-refused"):
        assert out[skipped] == "true", (skipped, out)
    for wanted in ("NOHDRS", "NOBODY", "CHGBODY"):
        assert out[wanted] == "false", (wanted, out)


def test_clean_eicar_banned_and_several_messages_on_one_connection(
        script: MilterScript, milterd: Daemon) -> None:
    script.add_message("clean", *message("clean1", "report.pdf", CLEAN_PDF))
    script.add_message("eicar", *message("eicar1", "eicar.zip.txt", EICAR))
    script.add_message("banned", *message("banned1", "invoice.pdf.exe", b"MZ harmless"))
    script.add_message("clean2", *message("clean2"))
    out = script.run(f"""
c = connect()
send(c, "QCLEAN1", "clean.h", "clean.b"); result("clean", c)
mt.echo("RESULT clean-hdr " .. tostring(mt.eom_check(c, MT_HDRADD, "X-Virus-Status", "Clean")))
send(c, "QEICAR1", "eicar.h", "eicar.b"); result("eicar", c)
{smtp_check("eicar", REJECT)}
send(c, "QBANNED1", "banned.h", "banned.b"); result("banned", c)
{smtp_check("banned", BANNED)}
send(c, "QCLEAN2", "clean2.h", "clean2.b"); result("clean2", c)
mt.disconnect(c)
""")
    assert out["clean"] == "c" and out["clean-hdr"] == "true", out
    assert out["eicar"] == "y" and out["eicar-smtp"] == "true", out
    assert out["banned"] == "y" and out["banned-smtp"] == "true", out
    assert out["clean2"] == "c", out
    logged = {str(x["queue_id"]): x for x in milter_log(milterd)}
    assert logged["QEICAR1"]["virus"] == EICAR_NAME
    assert logged["QEICAR1"]["message_id"] == "<eicar1@example.org>"
    assert logged["QBANNED1"]["virus"] == "Banned.DoubleExtension.pdf.exe"
    assert logged["QCLEAN2"]["verdict"] == "clean" and logged["QCLEAN2"]["action"] == "continue"


def test_message_larger_than_spill_size_is_spooled_scanned_and_removed(
        script: MilterScript, milterd: Daemon) -> None:
    big = 300 * 1024
    script.add_message("bigclean", *message("bigclean", "report.pdf", CLEAN_PDF, filler=big))
    script.add_message("bigeicar", *message("bigeicar", "x.bin", EICAR, filler=big))
    out = script.run(f"""
c = connect()
send(c, "QBIG1", "bigclean.h", "bigclean.b"); result("bigclean", c)
send(c, "QBIG2", "bigeicar.h", "bigeicar.b"); result("bigeicar", c)
{smtp_check("bigeicar", REJECT)}
mt.disconnect(c)
""")
    assert out["bigclean"] == "c" and out["bigeicar"] == "y" and out["bigeicar-smtp"] == "true"
    logged = {str(x["queue_id"]): x for x in milter_log(milterd)}
    for qid in ("QBIG1", "QBIG2"):
        assert logged[qid]["spilled"] is True and int(str(logged[qid]["bytes"])) > big
    assert os.listdir(milterd.workdir / "spool") == []  # every spool file removed


def test_aborted_transaction_is_forgotten(script: MilterScript, milterd: Daemon) -> None:
    script.add_message("eicar", *message("abort1", "e.bin", EICAR))
    script.add_message("clean", *message("after-abort"))
    out = script.run("""
c = connect()
mt.macro(c, SMFIC_MAIL, "i", "QABORTED")
check(mt.header(c, "Subject", "aborted"), "header")
check(mt.bodyfile(c, dir .. "/eicar.b"), "body")
check(mt.abort(c), "abort")
send(c, "QAFTER", "clean.h", "clean.b"); result("after", c)
mt.disconnect(c)
""")
    assert out["after"] == "c", out  # the aborted EICAR body did not leak into it
    queue_ids = [x["queue_id"] for x in milter_log(milterd)]
    assert "QAFTER" in queue_ids and "QABORTED" not in queue_ids


def test_pool_saturated_is_tempfail(short_tmp: Path) -> None:
    cfg = "[pool]\nqueue_size = 0\n[milter]\nprogress_interval = 0.2\n"
    d = launch(short_tmp, 0, "--engine", "chaos", "--milter-socket", str(short_tmp / "m"),
               config=cfg, workers=1)
    try:
        script = MilterScript(short_tmp, str(short_tmp / "m"))
        script.add_message("slow", [("Subject", "slow")], b"SCAND-CHAOS slow 3000\nhello\n")
        script.add_message("clean", *message("while-busy"))
        slow = script.start("""
c = connect()
send(c, "QSLOW", "slow.h", "slow.b"); result("slow", c)
mt.disconnect(c)
""", tag="slow")
        deadline = time.monotonic() + 20
        while d.stats()["pool"]["busy"] != 1:  # type: ignore[index]
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        out = script.run("""
c = connect()
send(c, "QBUSY", "clean.h", "clean.b"); result("busy", c)
mt.echo("RESULT busy-smtp " .. tostring(mt.eom_check(c, MT_SMTPREPLY, "451", "4.7.1",
  "Message not scanned (busy), try again later")))
mt.disconnect(c)
""")
        assert out["busy"] == "y" and out["busy-smtp"] == "true", out
        assert MilterScript.results(slow)["slow"] == "c"  # progress packets kept it alive
        busy = [x for x in milter_log(d) if x["queue_id"] == "QBUSY"]
        assert busy and busy[0]["verdict"] == "busy" and busy[0]["action"] == "tempfail"
    finally:
        d.stop()


def test_engine_down_is_tempfail_never_accept(short_tmp: Path) -> None:
    cfg = f'[clamd]\nsockets = ["{short_tmp}/no-clamd-here"]\n'
    d = launch(short_tmp, 0, "--engine", "clamd", "--milter-socket", str(short_tmp / "m"),
               config=cfg, workers=1)
    try:
        script = MilterScript(short_tmp, str(short_tmp / "m"))
        script.add_message("clean", *message("engine-down"))
        out = script.run("""
c = connect()
send(c, "QDOWN", "clean.h", "clean.b"); result("down", c)
mt.echo("RESULT down-smtp " .. tostring(mt.eom_check(c, MT_SMTPREPLY, "451", "4.7.1",
  "Message not scanned (engine-unavailable), try again later")))
mt.disconnect(c)
""")
        assert out["down"] == "y" and out["down-smtp"] == "true", out
        assert [x["verdict"] for x in milter_log(d)] == ["engine-unavailable"]
    finally:
        d.stop()


@pytest.mark.parametrize(("action", "letter", "check"), [
    ("quarantine", "c", "MT_QUARANTINE"),
    ("discard", "d", None),
    ("accept", "c", 'MT_HDRADD, "X-Virus-Status", "Infected (Eicar-Test-Signature)"'),
])
def test_infected_actions(short_tmp: Path, action: str, letter: str, check: str | None) -> None:
    cfg = f'[milter]\ninfected_action = "{action}"\nmax_message_bytes = 100000\n'
    d = launch(short_tmp, 0, "--milter-socket", str(short_tmp / "m"), config=cfg, workers=1)
    try:
        script = MilterScript(short_tmp, str(short_tmp / "m"))
        script.add_message("eicar", *message("act", "e.bin", EICAR))
        script.add_message("huge", *message("huge", filler=200_000))
        lua = 'c = connect()\nsend(c, "Q1", "eicar.h", "eicar.b"); result("eicar", c)\n'
        if check:
            lua += f'mt.echo("RESULT check " .. tostring(mt.eom_check(c, {check})))\n'
        lua += ('send(c, "Q2", "huge.h", "huge.b"); result("huge", c)\n'
                'mt.echo("RESULT huge-smtp " .. tostring(mt.eom_check(c, MT_SMTPREPLY, "451", '
                '"4.7.1", "Message not scanned (too-large), try again later")))\n'
                "mt.disconnect(c)\n")
        out = script.run(lua)
        assert out["eicar"] == letter, out
        if check:
            assert out["check"] == "true", out
        # over max_message_bytes: not scanned, so never passed
        assert out["huge"] == "y" and out["huge-smtp"] == "true", out
    finally:
        d.stop()


def test_inet_listener_on_loopback(short_tmp: Path) -> None:
    from tests.mta.postfix import free_port

    port = free_port()
    d = launch(short_tmp, 0, config=f'[milter]\ninet = "127.0.0.1:{port}"\n', workers=1)
    try:
        script = MilterScript(short_tmp, "")
        script.add_message("eicar", *message("inet", "e.bin", EICAR))
        out = script.run(f"""
c = mt.connect("inet:{port}@127.0.0.1", 40, 0.25)
if c == nil then error("connect") end
send(c, "QINET", "eicar.h", "eicar.b"); result("inet", c)
mt.disconnect(c)
""")
        assert out["inet"] == "y", out
    finally:
        d.stop()


def test_inet_off_loopback_needs_an_allow_list(short_tmp: Path) -> None:
    import subprocess
    import sys

    cfg = short_tmp / "bad.toml"
    cfg.write_text('[milter]\ninet = "192.0.2.1:7357"\n')
    r = subprocess.run([sys.executable, "-m", "scand.cli", "serve", "--socket",
                        str(short_tmp / "s"), "--config", str(cfg)],
                       capture_output=True, timeout=60, check=False)
    assert r.returncode == 78 and b"milter.inet_allow" in r.stderr, r.stderr


def test_sigterm_lets_a_message_in_scan_finish_then_removes_the_socket(short_tmp: Path) -> None:
    import signal

    d = launch(short_tmp, 0, "--engine", "chaos", "--milter-socket", str(short_tmp / "m"),
               workers=1)
    try:
        script = MilterScript(short_tmp, str(short_tmp / "m"))
        script.add_message("slow", [("Subject", "slow")], b"SCAND-CHAOS slow 2000\nhello\n")
        slow = script.start("""
c = connect()
send(c, "QSLOW", "slow.h", "slow.b"); result("slow", c)
mt.disconnect(c)
""")
        deadline = time.monotonic() + 20
        while d.stats()["pool"]["busy"] != 1:  # type: ignore[index]
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        assert MilterScript.results(slow)["slow"] == "c"
        assert d.proc.wait(30) == 0
        assert not (short_tmp / "m").exists()
    finally:
        d.stop()

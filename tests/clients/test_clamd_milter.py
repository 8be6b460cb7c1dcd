"""clamav-milter (Debian) pointed at scand's clamd front, driven by miltertest (Debian).

clamav-milter hands each message to "clamd" with FILDES (a local socket) and
rejects on FOUND. Through scand it also gets scand's attachment policy: a
banned attachment name is rejected like a virus. With scand stopped the
milter must answer tempfail (OnFail Defer), never accept.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EICAR, DaemonFactory

MILTER = shutil.which("clamav-milter", path="/usr/sbin:/usr/bin")
MILTERTEST = shutil.which("miltertest")

# One SMTP transaction; prints the milter's final word. Steps the milter negotiated
# away (SMFIP_NOHELO, ...) are skipped; a reply other than continue ends it early.
LUA = r"""
local conn = mt.connect("unix:" .. os.getenv("MILTER_SOCK"), 40, 0.25)
if conn == nil then print("NOCONN") os.exit(3) end
local function word(rep)
  if rep == SMFIR_CONTINUE or rep == SMFIR_ACCEPT then return "ACCEPT" end
  if rep == SMFIR_REJECT then return "REJECT" end
  if rep == SMFIR_TEMPFAIL then return "TEMPFAIL" end
  if rep == SMFIR_DISCARD then return "DISCARD" end
  if rep == SMFIR_REPLYCODE then
    if mt.eom_check(conn, MT_SMTPREPLY, "550") then return "REJECT" end
    if mt.eom_check(conn, MT_SMTPREPLY, "451") then return "TEMPFAIL" end
    return "REPLYCODE"
  end
  return "OTHER " .. tostring(rep)
end
local function step(name, fn, ...)
  local ok, r = pcall(fn, conn, ...)
  if not ok then
    if string.find(tostring(r), "negotiated SMFIP_NO") then return end
    print("LUAERR " .. name .. " " .. tostring(r)) os.exit(4)
  end
  if r ~= nil then print("ERR " .. name .. " " .. tostring(r)) os.exit(4) end
  local rep = mt.getreply(conn)
  if rep ~= SMFIR_CONTINUE then print(word(rep) .. " " .. name) os.exit(0) end
end
step("connect", mt.conninfo, "localhost", "127.0.0.1")
step("helo", mt.helo, "client.test")
step("mail", mt.mailfrom, "<a@example.com>")
step("rcpt", mt.rcptto, "<b@example.com>")
for line in io.lines(os.getenv("HEADERS")) do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  step("header", mt.header, name, value)
end
step("eoh", mt.eoh)
step("body", mt.bodyfile, os.getenv("BODY"))
local r = mt.eom(conn)
if r ~= nil then print("ERR eom " .. tostring(r)) os.exit(4) end
print(word(mt.getreply(conn)) .. " eom")
mt.disconnect(conn)
"""

pytestmark = pytest.mark.skipif(MILTER is None or MILTERTEST is None,
                                reason="run ./scripts/test (installs clamav-milter, miltertest)")


def transaction(work: Path, milter_sock: str, name: str, headers: list[str], body: bytes
                ) -> str:
    assert MILTERTEST
    (work / f"{name}.hdr").write_text("\n".join(headers) + "\n")
    (work / f"{name}.body").write_bytes(body)
    done = subprocess.run([MILTERTEST, "-s", str(work / "t.lua")], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"MILTER_SOCK": milter_sock, "HEADERS": str(work / f"{name}.hdr"),
                               "BODY": str(work / f"{name}.body"), "PATH": "/usr/bin:/bin"})
    return done.stdout.strip() + done.stderr.strip()


def test_clamav_milter_through_scand(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    clamd_sock = str(short_tmp / "clamd.ctl")
    d = scand_daemon("--clamd-socket", clamd_sock, config='[clamd_front]\nsocket_mode = "0666"\n')
    work = short_tmp / "milter"
    work.mkdir()
    (work / "t.lua").write_text(LUA)
    milter_sock = str(work / "milter.sock")
    conf = work / "clamav-milter.conf"
    conf.write_text(f"MilterSocket unix:{milter_sock}\nClamdSocket unix:{clamd_sock}\n"
                    f"Foreground yes\nLogFile {work}/milter.log\nLogVerbose yes\n"
                    f"PidFile {work}/milter.pid\nTemporaryDirectory {work}\n"
                    "OnInfected Reject\nOnFail Defer\nOnClean Accept\nAddHeader No\n")
    assert MILTER
    milter = subprocess.Popen([MILTER, f"--config-file={conf}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not Path(milter_sock).exists():
            assert milter.poll() is None, (work / "milter.log").read_text()
            assert time.monotonic() < deadline, "clamav-milter did not start"
            time.sleep(0.1)
        plain = ["From: a@example.com", "To: b@example.com", "Subject: test"]
        out = transaction(work, milter_sock, "eicar", plain, b"hi\r\n" + EICAR + b"\r\n")
        assert out == "REJECT eom", out
        attachment = base64.b64encode(b"MZ not really a program\r\n").decode()
        banned = (b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
                  b"--b1\r\nContent-Type: application/octet-stream\r\n"
                  b'Content-Disposition: attachment; filename="invoice.pdf.exe"\r\n'
                  b"Content-Transfer-Encoding: base64\r\n\r\n"
                  + attachment.encode() + b"\r\n--b1--\r\n")
        mime = [*plain, "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b1"']
        out = transaction(work, milter_sock, "banned", mime, banned)
        assert out == "REJECT eom", out
        out = transaction(work, milter_sock, "clean", plain, b"Just a note.\r\n")
        assert out == "ACCEPT eom", out
        log = d.log()
        assert '"verdict": "infected"' in log and "Banned" in log
        # scand stopped: the milter cannot scan, so it must defer, never accept.
        d.stop()
        out = transaction(work, milter_sock, "down", plain, b"Just a note.\r\n")
        assert out.startswith("TEMPFAIL"), out
    finally:
        milter.terminate()
        try:
            milter.wait(10)
        except subprocess.TimeoutExpired:
            milter.kill()
            milter.wait(5)

"""Drive scand's milter with Debian's ``miltertest`` (the MTA side, scripted in Lua).

A test writes its messages' bodies to files and a few Lua lines; the prelude
below gives it ``connect()``, ``send(conn, qid, headers_file, body_file)`` and
``result(tag, conn)`` (which prints ``RESULT <tag> <reply letter> [smtp reply]``);
the Python side parses those lines and asserts on them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.milter.mail import Headers

MILTERTEST = shutil.which("miltertest")
needs_miltertest = pytest.mark.skipif(MILTERTEST is None, reason="miltertest not installed "
                                      "(Debian package miltertest; scripts/test installs it)")

PRELUDE = r"""
function check(r, what)
  if r ~= nil then error(what .. ": " .. tostring(r)) end
end
function connect()
  local c = mt.connect("unix:" .. sock, 40, 0.25)
  if c == nil then error("mt.connect() failed") end
  return c
end
-- headers_file: one "Name: value" line each
function send(c, qid, headers_file, body_file)
  mt.macro(c, SMFIC_MAIL, "i", qid)
  for line in io.lines(dir .. "/" .. headers_file) do
    local name, value = string.match(line, "^([^:]+): (.*)$")
    check(mt.header(c, name, value), "mt.header")
  end
  check(mt.bodyfile(c, dir .. "/" .. body_file), "mt.bodyfile")
  check(mt.eom(c), "mt.eom")
end
function result(tag, c)
  local r = mt.getreply(c)
  mt.echo("RESULT " .. tag .. " " .. string.char(r))
end
"""


class MilterScript:
    """Files for one miltertest run in ``workdir``; :meth:`run` returns the RESULT lines."""

    def __init__(self, workdir: Path, sock: str) -> None:
        self.workdir = workdir
        self.sock = sock

    def add_message(self, name: str, headers: Headers, body: bytes) -> None:
        (self.workdir / f"{name}.h").write_text("".join(f"{n}: {v}\n" for n, v in headers))
        (self.workdir / f"{name}.b").write_bytes(body)

    def start(self, lua: str, tag: str = "t") -> subprocess.Popen[bytes]:
        script = self.workdir / f"{tag}.lua"
        script.write_text(PRELUDE + lua)
        assert MILTERTEST is not None
        return subprocess.Popen(
            [MILTERTEST, "-D", f"sock={self.sock}", "-D", f"dir={self.workdir}", "-s", str(script)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    @staticmethod
    def results(proc: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, str]:
        out, _ = proc.communicate(timeout=timeout)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text
        found = {}
        for line in text.splitlines():
            if line.startswith("RESULT "):
                _, tag, rest = line.split(" ", 2)
                found[tag] = rest
        return found

    def run(self, lua: str, timeout: float = 60) -> dict[str, str]:
        return self.results(self.start(lua), timeout)

"""The Perl recipes of docs/CLIENTS.md against the real daemon.

* MIMEDefang: its own ``message_contains_virus`` (Mail::MIMEDefang 3.x, from
  Debian's ``mimedefang`` package) with ``$SophieSock`` and
  ``$Features{'Virus:SOPHIE'}`` set as the recipe says. Skipped without it.
* amavisd-new: the three patterns of its ``Sophie`` av_scanners entry, run by
  Perl on scand's real reply bytes (amavisd's ``ask_daemon`` itself lives
  inside the monolithic amavisd program and cannot be called alone).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import EICAR
from tests.conftest import DaemonFactory

PERL = shutil.which("perl")


def has_mimedefang() -> bool:
    if PERL is None:
        return False
    done = subprocess.run([PERL, "-MMail::MIMEDefang::Antivirus", "-e1"], capture_output=True,
                          check=False)
    return done.returncode == 0


MIMEDEFANG_FILTER = r"""
use strict; use warnings;
use Mail::MIMEDefang;
use Mail::MIMEDefang::Antivirus;
$SyslogFacility = 'mail';   # mimedefang.pl sets this before it loads the filter
# -- as in docs/CLIENTS.md --
$SophieSock = $ARGV[0];
$Features{'Virus:SOPHIE'} = 1;
# -- MIMEDefang's working directory for this message; Sophie is sent "$CWD/Work" --
$CWD = $ARGV[1];
my ($code, $category, $action) = message_contains_virus();
print "$code $category $action ", ($VirusName // ""), "\n";
"""


@pytest.mark.skipif(not has_mimedefang(), reason="MIMEDefang (Debian: mimedefang) not installed")
def test_mimedefang_sophie(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon(workers=1)
    script = short_tmp / "filter.pl"
    script.write_text(MIMEDEFANG_FILTER)

    def run(socket_path: str, parts: dict[str, bytes]) -> str:
        cwd = short_tmp / f"msg{len(list(short_tmp.glob('msg*')))}"
        (cwd / "Work").mkdir(parents=True)
        for name, data in parts.items():
            (cwd / "Work" / name).write_bytes(data)
        assert PERL is not None
        done = subprocess.run([PERL, str(script), socket_path, str(cwd)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run(d.socket, {"part1": b"hello", "part2": EICAR}) == (
        "1 virus quarantine Eicar-Test-Signature")
    assert run(d.socket, {"part1": b"hello"}) == "0 ok ok"
    # A -1: reply (here -1:not-allowed: outside allowed_roots) and a stopped daemon
    # both come back as tempfail, never ok.
    strict = scand_daemon(workers=1, config='[server]\nallowed_roots = ["/nonexistent"]\n')
    assert run(strict.socket, {"part1": b"hello"}) == "999 swerr tempfail"
    assert run(str(short_tmp / "nobody"), {"part1": b"hello"}) == "999 cannot-execute tempfail"


AMAVISD_PATTERNS = r"""
use strict; use warnings;
# The Sophie entry of amavisd-new 2.13's av_scanners (docs/CLIENTS.md):
my $clean    = qr/(?x)^ 0+ ( : | [\000\r\n]* $)/m;
my $infected = qr/(?x)^ 1 ( : | [\000\r\n]* $)/m;
my $name     = qr/(?x)^ [-+]? \d+ : (.*?) [\000\r\n]* $/m;
local $/;
my $reply = <STDIN>;
my $verdict = $reply =~ $clean ? "clean" : $reply =~ $infected ? "infected" : "error";
my ($virus) = $verdict eq "infected" ? ($reply =~ $name) : ("");
print "$verdict $virus\n";
"""


@pytest.mark.skipif(PERL is None, reason="no perl")
def test_amavisd_sophie_patterns(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon(workers=1)
    parts = short_tmp / "parts"
    parts.mkdir()
    (parts / "p001").write_bytes(b"hello")
    (parts / "p002").write_bytes(b"<html>" + EICAR + b"</html>")
    clean = short_tmp / "cleanparts"
    clean.mkdir()
    (clean / "p001").write_bytes(b"hello")
    script = short_tmp / "amavis.pl"
    script.write_text(AMAVISD_PATTERNS)

    def amavisd_reads(reply: bytes) -> str:
        assert PERL is not None
        done = subprocess.run([PERL, str(script)], input=reply, capture_output=True,
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode().strip()

    # amavisd sends its parts directory with a trailing slash ("{}/\n").
    assert amavisd_reads(d.ask(f"{parts}/\n".encode())) == "infected Eicar-Test-Signature"
    assert amavisd_reads(d.ask(f"{clean}/\n".encode())) == "clean"
    assert amavisd_reads(d.ask(f"{short_tmp}/missing/\n".encode())) == "error"

"""Every fenced block of docs/CLIENTS.md is run or checked by a test, as written.

Each block carries a marker (tests/package/docblocks.py) and each marker is
claimed below: by a checker in this file (configuration checked with the real
tools: scand's own config loader, Postfix's postconf, exim -bV, perl -c), by
the package test, which runs the shell blocks as root in a clean Debian 12 root
with the package installed (tests/package/test_deb.py), or by the recipe test
named (which reads the block from this document). A new block without a
marker, or a marker nobody claims, fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from scand import config as configmod
from tests.package.docblocks import DOC, block, blocks

REPO = Path(__file__).resolve().parents[2]
POSTFIX = Path(os.environ.get("SCAND_POSTFIX_ROOT", REPO / ".cache" / "postfix"))
# Run as written, as root, in the package's Debian root: tests/package/test_deb.py.
IN_PACKAGE_ROOT = {"layout:user", "layout:systemd", "layout:daemontools", "spool:dir",
                   "postfix:milter-dir", "postfix:pipe-user", "exim:group"}
# Read from this document and run by these tests (the marker or section named in them).
ELSEWHERE = {
    **{f"qmail:{n}": ("tests/clients/test_clients_qmail_recipe.py", f'block("{n}")')
       for n in ("build", "install", "scand", "databytes", "run", "tcp.smtp", "tcprules",
                 "qfilter")},
    "postfix:pipe-master.cf": ("tests/mta/test_postfix_pipe.py", "## Postfix: pipe(8)"),
}
CONFIG_BLOCKS = ("layout:config", "qmail:scand", "postfix:milter-toml", "sendmail:toml",
                 "exim:toml", "clamd:toml")
CHECKED_HERE = {*CONFIG_BLOCKS, "layout:unit", "postfix:milter-main.cf", "sendmail:mc",
                "exim:main", "exim:acl", "amavis:av_scanners", "mimedefang:filter",
                "api:python", "postfix:pipe-master.cf"}


def test_every_block_is_marked_and_claimed() -> None:
    found = blocks()
    assert len(found) > 20
    unmarked = [body[:60] for marker, _, body in found if marker is None]
    assert not unmarked, f"docs/CLIENTS.md blocks without a <!-- marker -->: {unmarked}"
    markers = [marker for marker, _, _ in found]
    assert len(markers) == len(set(markers)), "a marker is used twice"
    claimed = IN_PACKAGE_ROOT | set(ELSEWHERE) | CHECKED_HERE
    assert set(markers) - claimed == set(), "blocks no test runs or checks"
    assert claimed - set(markers) == set(), "claimed blocks the document no longer has"
    for marker, (path, needle) in ELSEWHERE.items():
        assert needle in (REPO / path).read_text(), f"{path} does not read {marker}"


def test_the_packages_test_runs_the_shell_blocks() -> None:
    text = (REPO / "tests" / "package" / "test_deb.py").read_text()
    for marker in IN_PACKAGE_ROOT:
        assert f'"{marker}"' in text, marker


@pytest.mark.parametrize("marker", CONFIG_BLOCKS)
def test_config_blocks_load_on_top_of_the_layout(marker: str, tmp_path: Path) -> None:
    """Each recipe's keys, added to the layout's file, make a valid configuration."""
    base = tomllib.loads(block("layout:config"))
    for section, keys in tomllib.loads(block(marker)).items():
        base.setdefault(section, {}).update(keys)
    path = tmp_path / "scand.toml"
    path.write_text("\n".join(
        f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
        for section, keys in base.items()))  # JSON's strings, numbers and booleans are TOML's
    config = configmod.load(str(path))
    assert config.server.user == "scand"


def test_the_layout_is_the_packages_conffile() -> None:
    doc = tomllib.loads(block("layout:config"))
    conffile = tomllib.loads((REPO / "debian" / "scand.toml").read_text())
    for section, keys in doc.items():
        assert {k: conffile[section][k] for k in keys} == keys, section
    # Every recipe's socket is in the layout's places.
    for marker in CONFIG_BLOCKS:
        for section in tomllib.loads(block(marker)).values():
            path = section.get("socket", "/run/scand/")
            assert path.startswith(("/run/scand/", "/var/spool/postfix/scand/")), path


def test_the_unit_excerpt_is_the_example_unit_and_the_package_unit() -> None:
    example = (REPO / "examples" / "systemd" / "scand.service").read_text().splitlines()
    package = (REPO / "debian" / "scand.service").read_text().splitlines()
    for line in block("layout:unit").splitlines():
        assert line in example, line
    # The package's unit is the example with the package's path for the daemon.
    strip = [line for line in example if not line.startswith("#")]
    assert [line.replace("/usr/local/bin/", "/usr/bin/") for line in strip] == [
        line for line in package if not line.startswith("#")]
    assert not any(line.startswith(("User=", "Group=")) for line in package)


def test_sendmail_names_the_sendmail_socket() -> None:
    socket = tomllib.loads(block("sendmail:toml"))["milter"]["socket"]
    assert f"S=local:{socket}," in block("sendmail:mc")


@pytest.mark.skipif(not (POSTFIX / "usr/sbin/postconf").exists(),
                    reason="Postfix is not unpacked (scripts/test does it)")
def test_postfix_blocks_parse_with_postconf(tmp_path: Path) -> None:
    """main.cf (milter) and master.cf (pipe) as written, read back by Postfix's postconf."""
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n" + block("postfix:milter-main.cf"))
    (conf / "master.cf").write_text(block("postfix:pipe-master.cf"))
    env = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": str(POSTFIX / "usr/lib/postfix")}
    postconf = str(POSTFIX / "usr/sbin/postconf")
    main = subprocess.run([postconf, "-c", str(conf), "-n"], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    assert main.returncode == 0 and "warning" not in main.stderr, main.stderr
    assert "smtpd_milters = unix:/scand/milter" in main.stdout
    assert "milter_default_action = tempfail" in main.stdout
    for flag, want in (("-P", "smtp/inet/content_filter = scand:dummy"),
                       ("-M", "flags=Rq user=scand-filter null_sender=")):
        master = subprocess.run([postconf, "-c", str(conf), flag], capture_output=True,
                                text=True, env=env, timeout=30, check=False)
        assert master.returncode == 0 and "warning" not in master.stderr, master.stderr
        assert want in master.stdout, master.stdout


@pytest.mark.skipif(shutil.which("exim4") is None, reason="no exim4 (scripts/test installs it)")
def test_exim_blocks_parse_with_exim(tmp_path: Path) -> None:
    config = tmp_path / "exim.conf"
    config.write_text("primary_hostname = scand.test\n" + block("exim:main")
                      + "\nbegin acl\n\n" + block("exim:acl"))
    done = subprocess.run(["exim4", "-C", str(config), "-bV"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0 and "Configuration file is" in done.stdout, done.stderr
    shown = subprocess.run(["exim4", "-C", str(config), "-bP", "av_scanner", "acl_smtp_data"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert shown.splitlines() == ["av_scanner = sophie:/var/run/sophie",
                                  "acl_smtp_data = acl_check_data"]
    # A mistake in the ACL block is caught the same way (this check can fail).
    config.write_text(config.read_text().replace("deny    malware", "deny    malwar"))
    assert subprocess.run(["exim4", "-C", str(config), "-bV"], capture_output=True,
                          timeout=30, check=False).returncode != 0


@pytest.mark.skipif(shutil.which("perl") is None, reason="no perl")
@pytest.mark.parametrize("marker", ["amavis:av_scanners", "mimedefang:filter"])
def test_perl_blocks_compile(marker: str, tmp_path: Path) -> None:
    script = tmp_path / "block.pl"
    script.write_text(block(marker))
    done = subprocess.run(["perl", "-c", str(script)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_python_block_compiles() -> None:
    compile(block("api:python"), str(DOC), "exec")

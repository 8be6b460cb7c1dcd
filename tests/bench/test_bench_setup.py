"""The benches measure what they say: side lists, clamd's cache setting, the bomber's
engine choice, and the CPU reading of bench.profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import bomber, profile, sides
from scand import config as configmod
from scand.clamd.supervisor import render_conf
from scand.config import Config


def test_sides_parse_every_engine_and_clamd_setup() -> None:
    got = sides.parse("scand:builtin,scand:clamav,scand:clamd,clamd:disk,clamd:tmpfs+cache")
    assert got == [("scand", "builtin", False), ("scand", "clamav", False),
                   ("scand", "clamd", False), ("clamd", "disk", False),
                   ("clamd", "tmpfs", True)]
    for bad in ("scand:nope", "clamd:ssd", "redis:x", "scand"):
        with pytest.raises(SystemExit):
            sides.parse(bad)


def test_a_clamd_side_is_judged_without_the_policy() -> None:
    args = bomber.parse_args(["--sides", "scand:clamav,clamd:tmpfs", "--expect",
                              "mail+policy"])
    scand = sides.side_args(args, "scand", "clamav", False)
    clamd = sides.side_args(args, "clamd", "tmpfs", True)
    assert (scand.target, scand.engine, scand.expect) == ("scand", "clamav", "mail+policy")
    assert (clamd.target, clamd.clamd_tmp, clamd.clamd_cache, clamd.expect) == (
        "clamd", "/dev/shm", True, None)


def test_the_bomber_leaves_the_engine_to_a_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[engine]\nname = "clamav"\n')
    assert bomber.parse_args(["--config", str(cfg)]).engine is None  # the file decides
    assert bomber.parse_args([]).engine == "builtin"
    assert bomber.parse_args(["--engine", "clamav"]).engine == "clamav"
    out = bomber.no_cache_config(tmp_path, cfg).read_text()
    assert 'name = "clamav"' in out and 'backend = "none"' in out


@pytest.mark.parametrize("cache", [False, True])
def test_clamd_cache_is_set_in_its_one_line(cache: bool) -> None:
    # clamd keeps the first DisableCache it reads: a line appended after scand's
    # own would change nothing, so there must be exactly one, saying what was asked.
    cfg = configmod.override(Config(), "clamd", disable_cache=not cache)
    lines = [x for x in render_conf(cfg, "/s", "/l", "/t").splitlines()
             if x.startswith("DisableCache")]
    assert lines == [f"DisableCache {'no' if cache else 'yes'}"]


def test_profile_reads_cpu_and_roles_of_this_process_tree() -> None:
    roles = profile.descendants(os.getpid())
    assert roles[os.getpid()] == "daemon"
    before = profile.proc_cpu(os.getpid())
    sum(i * i for i in range(300_000))
    assert profile.proc_cpu(os.getpid()) > before
    assert profile.bucket("/usr/lib/x86_64-linux-gnu/libclamav.so.12", "cli_ac_scanbuff") \
        == "libclamav: matching"
    assert profile.bucket("[kernel.kallsyms]", "shmem_unlink") == "kernel: files"

"""scand serve names every key of the config file that one of its flags replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from scand.cli import build_parser, make_loader


def load(tmp_path: Path, text: str, *flags: str) -> None:
    config = tmp_path / "scand.toml"
    config.write_text(text)
    args = build_parser().parse_args(["serve", "--config", str(config), *flags])
    loader = make_loader(args)
    loader()
    loader()  # a reload (SIGHUP) does not repeat the warning


def test_a_flag_replacing_the_files_socket_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(tmp_path, '[server]\nsocket = "/run/scand/sophie"\nsocket_group = "scand"\n',
         "--socket", str(tmp_path / "s"), "--socket-group", "scand", "--workers", "2")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"scand: warning: a command-line flag overrides server.socket = "
                   f"'/run/scand/sophie' from {tmp_path / 'scand.toml'}"]


def test_flags_for_keys_the_file_left_out_are_silent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(tmp_path, '[engine]\nname = "builtin"\n', "--socket", str(tmp_path / "s"))
    assert capsys.readouterr().err == ""

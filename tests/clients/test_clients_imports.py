"""clients/ stays stdlib-only, single-file and in step with its embedded core.

* Statically: every import in clients/*.py is the stdlib (or a sibling client
  module); trio only inside AsyncClient's methods or under TYPE_CHECKING.
* At run time: with ``python -I -S`` (no site-packages) and trio blocked, every
  client file loads and runs ``--help``, and only stdlib modules get imported.
* Each command-line script carries a byte-identical copy of scandclient's core.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clients import embed_core
from tests.clients.conftest import CLIENTS, SCRIPTS, run_client

CLIENT_FILES = sorted(p for p in CLIENTS.glob("*.py") if p.name != "__init__.py")
SIBLINGS = {p.stem for p in CLIENT_FILES}


def _allowed_trio(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """trio may be imported only in an AsyncClient method body or under TYPE_CHECKING."""
    chain = []
    cur: ast.AST | None = node
    while cur is not None:
        chain.append(cur)
        cur = parents.get(cur)
    for i, anc in enumerate(chain):
        if isinstance(anc, ast.If) and ast.unparse(anc.test) == "TYPE_CHECKING":
            return True
        if isinstance(anc, ast.ClassDef) and anc.name == "AsyncClient":
            return any(isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef) for c in chain[:i])
    return False


@pytest.mark.parametrize("path", CLIENT_FILES, ids=lambda p: p.name)
def test_imports_are_stdlib_only(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: would break the single-file copy
                bad.append(f"line {node.lineno}: relative import")
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names or top in SIBLINGS:
                continue
            if top == "trio" and _allowed_trio(node, parents):
                continue
            bad.append(f"line {node.lineno}: import {name}")
    assert not bad, f"{path.name} imports outside the stdlib: {bad}"


def test_runtime_import_closure_is_stdlib() -> None:
    """Load every client file with no site-packages and trio blocked; list what got imported."""
    probe = textwrap.dedent(f"""
        import contextlib, io, runpy, sys
        sys.modules["trio"] = None  # any import of trio now fails loudly
        sys.path.insert(0, {str(CLIENTS)!r})
        import scandclient
        for script in {[str(p) for p in SCRIPTS.values()]!r}:
            sys.argv = [script, "--help"]
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    runpy.run_path(script, run_name="__main__")
                except SystemExit as exc:
                    assert exc.code == 0, (script, exc.code)
        loaded = {{m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}}
        print(" ".join(sorted(loaded - set(sys.stdlib_module_names))))
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) <= {"__main__", "scandclient"}


def test_scandclient_imports_without_trio_but_async_needs_it() -> None:
    probe = textwrap.dedent(f"""
        import sys
        sys.modules["trio"] = None
        sys.path.insert(0, {str(CLIENTS)!r})
        import scandclient
        client = scandclient.AsyncClient("/nonexistent")
        print("ok", "trio" in sys.modules and sys.modules["trio"] is not None)
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok False"), done.stderr


@pytest.mark.parametrize("path", embed_core.scripts(), ids=lambda p: p.name)
def test_embedded_core_is_identical(path: Path) -> None:
    block = embed_core.split(path.read_text(), path.name)[1]
    assert block == embed_core.core(), (
        f"{path.name}: its client core differs from scandclient.py; "
        "run `python -m tests.clients.embed_core`"
    )


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_are_executable_single_files_with_a_manual(name: str) -> None:
    path = SCRIPTS[name]
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/usr/bin/env -S python3 -IS\n")
    done = run_client(name, "--help")
    assert (done.returncode, done.stderr) == (0, b"")
    manual = done.stdout.decode()
    assert manual.startswith(f"usage: {name} ")
    for section in ("options:", "exit status:", "environment:", "SCAND_SOCKET", "SCAND_TIMEOUT"):
        assert section in manual, f"{name} --help lacks {section!r}"
    done = run_client(name, "--version")
    assert done.returncode == 0 and done.stdout.decode().startswith(f"{name} ")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_script_runs_copied_alone(name: str, tmp_path: Path) -> None:
    """The single-file promise: a copy in an empty directory works on its own."""
    copy = tmp_path / SCRIPTS[name].name
    shutil.copy2(SCRIPTS[name], copy)
    done = subprocess.run([sys.executable, "-I", "-S", str(copy), "--version"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{name} ")

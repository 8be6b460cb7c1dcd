"""clients/ stays stdlib-only, and its single files are built from one source.

* Statically: every import in clients/*.py is the stdlib (or a clients/ module);
  trio only inside AsyncClient's methods or under TYPE_CHECKING. The built
  single files import nothing from clients/ at all.
* At run time: with ``python -I -S`` (no site-packages) and trio blocked, every
  built client loads and runs ``--help``, and only stdlib modules get imported.
* The client core has one source: no module of clients/ is copied into another,
  and the console scripts that installing the project put on PATH are the
  built files of the current source (a stale install fails here).
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

from clients import build
from tests.clients.conftest import BUILT, CLIENTS, SCRIPTS, run_client

CLIENT_FILES = sorted(p for p in CLIENTS.glob("*.py") if p.name != "__init__.py")
BUILT_FILES = [BUILT / name for name in build.ENTRIES]


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


@pytest.mark.parametrize("path", CLIENT_FILES + BUILT_FILES, ids=lambda p: p.name)
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
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top == "clients" and path.parent == CLIENTS:  # the one source; inlined when built
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
        sys.path.insert(0, {str(BUILT)!r})
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
        sys.path.insert(0, {str(BUILT)!r})
        import scandclient
        client = scandclient.AsyncClient("/nonexistent")
        print("ok", "trio" in sys.modules and sys.modules["trio"] is not None)
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok False"), done.stderr


def test_build_is_reproducible_and_complete(tmp_path: Path) -> None:
    """Two builds give the same bytes; every client and the API are built."""
    first = {p.name: p.read_bytes() for p in build.build(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in build.build(tmp_path / "b")}
    assert first == second
    assert set(first) == set(build.ENTRIES)
    for name, text in first.items():
        assert b"\nfrom clients" not in text and b"\nimport clients" not in text, name


def test_no_client_module_is_copied_into_another() -> None:
    """One source: no function or class of the core is defined twice in clients/."""
    seen: dict[str, str] = {}
    twice = []
    for path in CLIENT_FILES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                if node.name in seen and node.name not in ("main", "run"):
                    twice.append(f"{node.name}: {seen[node.name]} and {path.name}")
                seen.setdefault(node.name, path.name)
    assert not twice


def test_installed_console_scripts_are_the_current_build() -> None:
    """The scripts `pip install` put beside this interpreter run today's build, compiled."""
    bindir = Path(sys.prefix) / "bin"
    installed = [bindir / name for name in SCRIPTS if (bindir / name).exists()]
    if not installed:
        pytest.skip(f"the project is not installed in {sys.prefix}")
    for path in installed:
        text = path.read_text()
        assert text.startswith(f"#!{sys.executable} -IS\n") or text.startswith("#!/"), text[:80]
        assert text.partition("\n")[0].endswith(" -IS")
        module = build.ENTRIES[path.name]
        assert f"from {module} import main" in text
        assign = next(n for n in ast.parse(text).body if isinstance(n, ast.Assign))
        dirs = [Path(d) for d in ast.literal_eval(assign.value)]
        found = next(d / f"{module}.py" for d in dirs if (d / f"{module}.py").exists())
        assert found.read_text() == build.render(module), (
            f"{found} is stale: run ./scripts/test (pip install -e .) again")
        cache = found.parent / "__pycache__"
        assert any(cache.glob(f"{module}.*.pyc")), f"{found} is not byte-compiled"


def test_install_writes_stubs_that_run_the_compiled_clients(tmp_path: Path) -> None:
    """`python3 -m clients.build --install PREFIX`: the layout the qmail recipe uses."""
    paths = build.install(tmp_path, sys.executable)
    assert sorted(p.name for p in paths) == sorted(SCRIPTS)
    lib = tmp_path / "lib" / "scand-clients"
    assert any((lib / "__pycache__").glob("scand_queue.*.pyc"))
    done = subprocess.run([str(tmp_path / "bin" / "scand-queue"), "--version"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "scand-queue 0.1.0\n", "")


HEAVY = ("signal", "enum", "subprocess", "shlex", "re", "typing", "socket", "json", "argparse",
         "collections", "contextlib", "functools", "importlib.util", "tempfile")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_loading_a_client_imports_nothing_heavy(name: str) -> None:
    """Start-up near the interpreter's floor: none of the modules that cost ms per message."""
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(BUILT)!r})
        from importlib.machinery import SourceFileLoader
        SourceFileLoader("client", {str(SCRIPTS[name])!r}).load_module()
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, ""), done.stderr


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_copied_single_file_installs_itself_compiled(name: str, tmp_path: Path) -> None:
    """`scand-queue --install PREFIX`: what docs/CLIENTS.md tells a qmail admin to run."""
    copy = tmp_path / name
    shutil.copy2(SCRIPTS[name], copy)
    done = subprocess.run([sys.executable, "-I", "-S", str(copy), "--install", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    module = name.replace("-", "_")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == [str(tmp_path / "bin" / name),
                                   str(tmp_path / "lib" / "scand-clients" / f"{module}.py")]
    assert any((tmp_path / "lib" / "scand-clients" / "__pycache__").glob(f"{module}.*.pyc"))
    done = subprocess.run([str(tmp_path / "bin" / name), "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"{name} 0.1.0\n")


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

"""ARCHITECTURE.md's import table is data: every scand module's imports must match it.

The table (section "The packages, and what each may import") names modules in its
first column (``fronts/`` is a package and everything in it; a module belongs to
its longest entry, so rows keep working when modules move between packages), the
side of the process boundary in its second, and in its last the scand modules and
third-party packages the row may import. Imports are read with ``ast`` (also
those inside functions; not those under ``if TYPE_CHECKING:``, which never run).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scand"
SIDES = {"worker", "daemon", "both"}
# Which sides a module of each side may import.
MAY_CROSS = {"worker": {"worker", "both"}, "daemon": {"daemon", "both"}, "both": {"both"}}
# Known violations, each with where it is fixed. Allowed, not required: a fix needs no
# edit here. Private names (a leading underscore) imported from another module count.
KNOWN: dict[tuple[str, str], str] = {
    ("scand.fronts.clamd_listen", "scand.server._resolve_group"):
        "the listener toolkit (branch toolkit) gives the fronts one bind",
}


@dataclass(frozen=True)
class Row:
    modules: tuple[str, ...]  # dotted prefixes: "scand.fronts." or exact "scand.events"
    side: str
    allowed: tuple[str, ...]  # dotted scand prefixes/modules and third-party names


def _dotted(token: str) -> str:
    """``fronts/`` -> ``scand.fronts.`` (a package), ``clamd/engine`` -> ``scand.clamd.engine``."""
    dotted = "scand." + token.strip("/").replace("/", ".")
    return dotted + "." if token.endswith("/") else dotted


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith("."):
        return module == pattern[:-1] or module.startswith(pattern)
    return module == pattern or module.startswith(pattern + ".")


def parse_table(text: str) -> list[Row]:
    start = text.index("| package / module |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        side = cells[1]
        if side not in SIDES:
            continue  # clients/: outside scand, tested by tests/clients
        modules = tuple(_dotted(t) for t in re.findall(r"`([^`]+)`", cells[0]))
        allowed = []
        for token in re.findall(r"`([^`]+)`", cells[-1]):
            if token == "*" or (token.isidentifier() and not _is_scand(token)):
                allowed.append(token)  # third-party package, or anything
            else:
                allowed.append(_dotted(token))
        rows.append(Row(modules, side, tuple(allowed)))
    return rows


def _is_scand(token: str) -> bool:
    return (PACKAGE / f"{token}.py").exists() or (PACKAGE / token).is_dir()


def all_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, modules: set[str]) -> set[str]:
    """Dotted names ``module`` imports at run time: scand modules (``from scand.x import y``
    is ``scand.x.y`` when that is a module; a private name ``_z`` is ``scand.x._z``)
    and third-party top-level packages."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules or (alias.name.startswith("_") and base.startswith("scand")):
                    out.add(full)
                else:
                    out.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in out if name != "__future__"}


def row_of(module: str, rows: list[Row]) -> Row | None:
    best: tuple[int, Row] | None = None
    for row in rows:
        for pattern in row.modules:
            if _matches(module, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), row)
    return best[1] if best else None


def violations(text: str) -> list[str]:
    rows = parse_table(text)
    modules = all_modules()
    names = set(modules)
    stdlib = set(sys.stdlib_module_names)
    found = []
    for module, path in modules.items():
        if module == "scand":
            continue  # the version, importable by all
        row = row_of(module, rows)
        if row is None:
            found.append(f"{module}: no row in the table")
            continue
        for name in sorted(imports(module, path, names)):
            top = name.split(".")[0]
            if name == "scand" or top in stdlib:
                continue
            if (module, name) in KNOWN:
                continue
            if name.rpartition(".")[2].startswith("_") and not name.endswith("__version__"):
                found.append(f"{module} imports a private name {name}")
                continue
            if top != "scand":
                if top not in row.allowed and "*" not in row.allowed:
                    found.append(f"{module} imports {top}: not in its row")
                continue
            target = row_of(name, rows)
            if target is None:
                found.append(f"{module} imports {name}, which has no row")
                continue
            if target.side not in MAY_CROSS[row.side]:
                found.append(f"{module} ({row.side}) imports {name} ({target.side})")
            elif target is not row and "*" not in row.allowed and not any(
                    _matches(name, allowed) for allowed in row.allowed):
                found.append(f"{module} imports {name}: not in its row")
    return found


def test_architecture_table_matches_the_code() -> None:
    found = violations((ROOT / "ARCHITECTURE.md").read_text())
    assert not found, "\n".join(found)


def test_every_row_names_modules_that_exist() -> None:
    """A row left behind by a move is noise: every named module must exist
    (or the toolkit's move into fronts/ has left ``connection``/``server``/``remote``)."""
    modules = set(all_modules())
    for row in parse_table((ROOT / "ARCHITECTURE.md").read_text()):
        for pattern in row.modules:
            moved = pattern in ("scand.connection", "scand.server", "scand.remote",
                                "scand.remote_policy")
            assert moved or any(_matches(m, pattern) for m in modules), pattern


@pytest.mark.parametrize(("table_line", "expected"), [
    ("| `service` | daemon | x | `trio`, `structlog` |", "scand.service imports scand.pool"),
    ("| `pool/` | daemon | x | `trio`, `structlog`, `config`, `events`, `engines/base`, `proc`, "
     "`pool/`, `worker/wire` |", "scand.pool.report imports scand.worker.memory"),
    ("| `worker/` | daemon | x | `*` |",
     "scand.worker.scanner (daemon) imports scand.cache (worker)"),
])
def test_the_check_catches_a_wrong_row(table_line: str, expected: str) -> None:
    """The checker itself: a row made wrong is reported."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    name = table_line.split("`")[1]
    lines = [line for line in text.splitlines()
             if not line.startswith(f"| `{name}` |")]
    start = next(i for i, line in enumerate(lines) if line.startswith("| package / module |"))
    lines.insert(start + 2, table_line)
    found = violations("\n".join(lines))
    assert any(expected in f for f in found), found

"""Issue [2/7]: the import rules hold where they matter.

* protocol, events and config use the stdlib only;
* a worker *that the zygote forked* (the production path) holds no trio, no
  structlog and nothing daemon-side, whatever engine it runs;
* engines import nothing daemon-side;
* clients are stdlib-only (tests/clients/test_clients_imports.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import trio

from scand import config as configmod
from scand.config import Config
from scand.pool.process import WorkerProcess
from scand.pool.spawner import Spawner
from scand.worker import DAEMON_SIDE
from tests.conftest import ROOT


def modules_after(imports: str) -> list[str]:
    """Every module a fresh interpreter holds after ``imports`` (no site packages)."""
    code = f"import sys; {imports}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return list(json.loads(out.stdout))


def third_party(mods: list[str]) -> list[str]:
    stdlib = sys.stdlib_module_names
    tops = {m.split(".")[0] for m in mods} - set(stdlib) - {"scand", "__main__"}
    return sorted(t for t in tops if not t.startswith(("__editable__", "_distutils_hack")))


@pytest.mark.parametrize("module", ["scand.protocol", "scand.events", "scand.config"])
def test_sans_io_modules_are_stdlib_only(module: str) -> None:
    mods = modules_after(f"import {module}")
    assert third_party(mods) == []
    allowed = {"scand.protocol", "scand.events", "scand.config", "scand.engines",
               "scand.engines.registry"}
    assert {m for m in mods if m.startswith("scand.")} <= allowed


@pytest.mark.parametrize("module", ["scand.engines.builtin", "scand.engines.chaos",
                                    "scand.engines.clamav.engine", "scand.clamd.engine",
                                    "scand.cache", "scand.content", "scand.worker.child",
                                    "scand.worker.zygote"])
def test_worker_side_imports_nothing_daemon_side(module: str) -> None:
    mods = modules_after(f"import {module}")
    bad = [m for m in mods if any(m == p or m.startswith(p + ".") for p in DAEMON_SIDE)]
    assert bad == []


@pytest.mark.parametrize("engine", ["builtin", "chaos", "clamav"])
async def test_a_forked_worker_holds_nothing_daemon_side(engine: str) -> None:
    """The real path: the zygote forks the worker; the worker reports its modules."""
    config = configmod.override(Config(), "engine", name=engine)
    spawner = Spawner()
    await spawner.start(config)
    try:
        worker = await WorkerProcess.spawn(spawner, config, 0)
        try:
            assert worker.ready is not None and not worker.ready.error
            assert worker.ready.pid != spawner.proc.pid if spawner.proc else True
            assert worker.ready.modules == ()
        finally:
            await worker.kill()
    finally:
        with trio.move_on_after(10):
            await spawner.aclose()


def test_the_report_would_catch_a_daemon_module() -> None:
    """The check itself can fail: a process that holds trio reports it."""
    from scand.worker.child import daemon_side_modules

    assert "trio" in daemon_side_modules()  # this test process runs trio


def test_config_and_engines_do_not_import_each_other() -> None:
    assert "scand.engines.base" not in modules_after("import scand.config")
    assert "scand.config" not in modules_after("import scand.engines.base")

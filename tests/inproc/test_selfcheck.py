"""Self-check logic on trio's autojump clock: a real directory, a fake service."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from scand import config as configmod
from scand.config import Config
from scand.engines.auto import database_state
from scand.selfcheck import SelfCheck, State

INTERVAL = 10.0
SETTLE = 3.0


async def fingerprint(path: str) -> State:
    """In the task itself: a thread would let the autojump clock run ahead of it."""
    return database_state(path)


def make_check(service: FakeService) -> SelfCheck:
    return SelfCheck(service, fingerprint)


class FakeService:
    """Reload "loads" the directory: it fails while a file says BROKEN or is cut short."""

    def __init__(self, directory: Path, interval: float = INTERVAL, name: str = "builtin",
                 managed: object | None = None) -> None:
        self.directory = directory
        self.config = configmod.override(
            configmod.override(Config(), "engine", name=name, signatures=str(directory),
                               self_check=interval, self_check_settle=SETTLE),
            "clamd", sockets=["/run/clamd.ctl"] if name == "clamd" else [])
        self.reloads = 0
        self._managed = managed
        self.done: list[tuple[float, bool, list[str]]] = []  # (time, ok, file contents)
        self.t0 = 0.0

    @property
    def managed(self) -> object | None:
        return self._managed

    async def reload(self) -> bool:
        self.reloads += 1
        texts = [p.read_text() for p in sorted(self.directory.iterdir())]
        ok = all("BROKEN" not in t and t.endswith("\n") for t in texts)
        self.done.append((trio.current_time(), ok, texts))
        return ok


async def run_for(service: FakeService, seconds: float, *steps: tuple[float, Path, str]
                  ) -> SelfCheck:
    """Start self-check at t=0, write each (time, file, text) at its time, stop at
    ``seconds``."""
    check = make_check(service)
    start = service.t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(check.run)
        for at, path, text in steps:
            await trio.sleep_until(start + at)
            path.write_text(text)
        await trio.sleep_until(start + seconds)
        nursery.cancel_scope.cancel()
    return check


def times(service: FakeService) -> list[tuple[float, bool]]:
    return [(round(t - service.t0), ok) for t, ok, _ in service.done]


async def test_a_change_is_reloaded_once_it_holds_still(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    (tmp_path / "a.ndb").write_text("A:0:*:41\n")
    service = FakeService(tmp_path)
    check = await run_for(service, 60, (15, tmp_path / "b.ndb", "B:0:*:42\n"))
    # Seen at the check at t=20, still the same at t=23: one reload then.
    assert times(service) == [(23, True)]
    assert check.checks == 5 and check.reloads == 1


async def test_nothing_changes_nothing_reloads(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    (tmp_path / "a.ndb").write_text("A:0:*:41\n")
    service = FakeService(tmp_path)
    # freshclam rewrites its state file at each run; a temp file is not a database.
    check = await run_for(service, 95, (15, tmp_path / "freshclam.dat", "state"),
                          (35, tmp_path / "freshclam.dat", "state, later"),
                          (45, tmp_path / "tmp.ndb.part", "half"))
    assert service.done == [] and check.checks == 9


async def test_a_settings_file_counts(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    service = FakeService(tmp_path)
    await run_for(service, 30, (15, tmp_path / "local.ign2", "Some.Signature\n"))
    assert times(service) == [(23, True)]


async def test_a_half_written_file_waits_until_it_is_complete(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    path = tmp_path / "b.ndb"
    service = FakeService(tmp_path)
    await run_for(service, 60, (15, path, "B:0:*:4"), (21, path, "B:0:*:4243\n"))
    # Half at the check (t=20), complete at t=23 (changed: settle again), still at 26.
    assert times(service) == [(26, True)]
    assert service.done[0][2] == ["B:0:*:4243\n"]


async def test_a_broken_set_is_kept_and_not_retried_until_the_directory_changes(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    (tmp_path / "a.ndb").write_text("A:0:*:41\n")
    bad = tmp_path / "bad.ndb"
    service = FakeService(tmp_path)
    check = await run_for(service, 90, (15, bad, "BROKEN line\n"), (52, bad, "C:0:*:43\n"))
    # Failed at t=23; the checks at 33 and 43 leave it; fixed at 52, seen at 53, loaded at 56.
    assert times(service) == [(23, False), (56, True)]
    assert check.stats() == {"directory": str(tmp_path), "interval": INTERVAL, "checks": 8,
                             "reloads": 2, "last": "done", "kept_broken": False}
    broken = FakeService(tmp_path)
    (tmp_path / "bad.ndb").write_text("BROKEN again\n")
    check = await run_for(broken, 30, (15, tmp_path / "bad.ndb", "BROKEN once more\n"))
    assert check.stats()["kept_broken"] is True and check.stats()["last"] == "kept"


async def test_a_reload_from_elsewhere_is_the_new_baseline(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    service = FakeService(tmp_path)
    check = make_check(service)
    service.t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(check.run)
        await trio.sleep(15)
        (tmp_path / "b.ndb").write_text("B:0:*:42\n")
        await service.reload()  # RELOAD over a socket: it read the new file
        await trio.sleep(40)
        nursery.cancel_scope.cancel()
    assert times(service) == [(15, True)]  # self-check did not load it again
    assert check.reloads == 0


async def test_off(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    for service in (FakeService(tmp_path, interval=0), FakeService(tmp_path, name="clamd")):
        check = await run_for(service, 100, (15, tmp_path / "b.ndb", "B:0:*:42\n"))
        assert check.checks == 0 and service.done == []
    # A managed clamd (scand starts it on the directory) is watched.
    managed = FakeService(tmp_path, name="clamd", managed=object())
    await run_for(managed, 60, (15, tmp_path / "c.ndb", "C:0:*:43\n"))
    assert times(managed) == [(23, True)]

"""HAProxy agent-check answers (pure): drain, down, and the weight from the pool."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from scand.farm.agent import Snapshot, agent_line, snapshot, weight


def test_idle_is_full_weight_and_up() -> None:
    assert agent_line(Snapshot(workers=2, live=2)) == b"up ready 100%\n"


def test_weight_falls_as_workers_fill_and_the_queue_grows() -> None:
    steps = [weight(Snapshot(workers=4, live=4, busy=b, queued=q))
             for b, q in [(0, 0), (1, 0), (2, 0), (4, 0), (4, 4), (4, 12), (4, 400)]]
    assert steps == [100, 80, 67, 50, 33, 20, 1]
    assert steps == sorted(steps, reverse=True)
    assert agent_line(Snapshot(workers=4, live=4, busy=4, queued=4)) == b"up ready 33%\n"


def test_drain_while_stopping_or_reloading_wins_over_everything() -> None:
    assert agent_line(Snapshot(stopping=True)) == b"drain\n"
    assert agent_line(Snapshot(reloading=True, busy=1)) == b"drain\n"
    assert agent_line(Snapshot(stopping=True, engine_down="clamd down")) == b"drain\n"


def test_down_when_the_engine_cannot_scan() -> None:
    assert agent_line(Snapshot(engine_down="clamd down")) == b"down#clamd down\n"
    assert agent_line(Snapshot(workers=2, live=0)) == b"down#no worker\n"


def test_every_line_is_one_ascii_line() -> None:
    for s in (Snapshot(), Snapshot(stopping=True), Snapshot(engine_down="é"),
              Snapshot(busy=9, queued=99)):
        line = agent_line(s)
        assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()


def _service(busy: list[bool], queued: int = 0, draining: bool = False,
             reloading: bool = False, clamd_rc: int | str | None = "none") -> Any:
    managed = None
    if clamd_rc != "none":
        managed = SimpleNamespace(
            down_reason=lambda: "" if clamd_rc is None else "clamd down")
    return SimpleNamespace(
        pool=SimpleNamespace(workers=[SimpleNamespace(busy=b) for b in busy], waiting=queued),
        config=SimpleNamespace(worker_count=2), draining=draining, reloading=reloading,
        managed=managed)


def test_snapshot_reads_the_service() -> None:
    assert agent_line(snapshot(_service([True, False], queued=1))) == b"up ready 50%\n"
    assert agent_line(snapshot(_service([False, False]), stopping=True)) == b"drain\n"
    assert agent_line(snapshot(_service([False, False], draining=True))) == b"drain\n"
    assert agent_line(snapshot(_service([False, False], reloading=True))) == b"drain\n"
    assert agent_line(snapshot(_service([False], clamd_rc=None))) == b"up ready 100%\n"
    assert agent_line(snapshot(_service([False], clamd_rc=-9))) == b"down#clamd down\n"
    assert agent_line(snapshot(_service([]))) == b"down#no worker\n"

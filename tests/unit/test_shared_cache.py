"""The memory backend's one table per daemon (scand.cache.shared): shared across
fork, TTL and eviction, and a torn or foreign slot reads as a miss, never a verdict."""

from __future__ import annotations

import os

import pytest

from scand import config as configmod
from scand.cache import open_cache, shared
from scand.cache.memory import MemoryStore
from scand.cache.shared import MAX_VALUE, SLOT, WAYS, SharedStore
from scand.config import Config
from scand.events import CLEAN


def test_get_put_and_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("scand.cache.shared.time.monotonic", lambda: now[0])
    store = SharedStore(100, ttl=10)
    assert store.get("a") is None
    store.put("a", b"0")
    store.put("b", b"1:Eicar-Test-Signature")
    assert store.get("a") == b"0" and store.get("b") == b"1:Eicar-Test-Signature"
    assert len(store) == 2
    store.put("a", b"1:Other")  # the same key keeps one slot
    assert store.get("a") == b"1:Other" and len(store) == 2
    now[0] += 10.5
    assert store.get("a") is None and len(store) == 0


def test_seen_by_a_forked_process() -> None:
    store = SharedStore(64, ttl=60)
    store.put("before", b"0")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = store.get("before") == b"0"
        store.put("from-child", b"1:Worm")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("from-child") == b"1:Worm"  # written by the child, read here


def test_bounded_and_full_sets_evict_the_soonest_expiring(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    now = [0.0]
    monkeypatch.setattr("scand.cache.shared.time.monotonic", lambda: now[0])
    store = SharedStore(8, ttl=100)
    for i in range(50):
        now[0] += 1
        store.put(f"k{i}", b"0")
    assert len(store) <= store.slots == 8
    assert store.get("k49") == b"0"  # the newest entry is always kept


def test_too_long_a_value_is_not_stored() -> None:
    store = SharedStore(16, ttl=60)
    store.put("k", b"1:" + b"x" * MAX_VALUE)
    assert store.get("k") is None


def test_a_torn_slot_is_a_miss() -> None:
    store = SharedStore(16, ttl=60)
    store.put("k", b"1:Worm.A")
    kid_off = next(off for off in range(0, store.slots * SLOT, SLOT)
                   if store._map[off:off + 8] != bytes(8))
    # A writer killed half-way: the first half of another value over the slot.
    store._map[kid_off + 34:kid_off + 38] = b"0\x00\x00\x00"
    assert store.get("k") is None
    store.put("k", b"0")  # the torn slot is reused
    assert store.get("k") == b"0"


def test_a_key_never_reads_another_keys_value() -> None:
    store = SharedStore(WAYS, ttl=60)  # every key in the same few slots
    for i in range(20):
        store.put(f"k{i}", f"1:V{i}".encode())
    for i in range(20):
        got = store.get(f"k{i}")
        assert got in (None, f"1:V{i}".encode())


def test_open_cache_uses_the_table_made_before_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "_TABLE", None)
    cache = open_cache(Config(), "gen")
    assert isinstance(cache.store, MemoryStore)  # stand-alone: its own store
    shared.prepare(100, 60)
    cache = open_cache(Config(), "gen")
    assert cache.store is shared._TABLE


@pytest.mark.parametrize(("section", "change"), [
    ("clamav", {"alert_encrypted": False}),  # encrypted archives: -1:encrypted or scanned
    ("limits", {"max_file_size": 1024}),  # libclamav's MaxFileSize (EXCEEDS_MAX)
])
def test_a_reload_that_changes_what_the_engine_answers_misses_older_entries(
        monkeypatch: pytest.MonkeyPatch, section: str, change: dict[str, object]) -> None:
    """The table outlives every worker and generation (the same signature set keeps
    its generation id across a reload): a ``0`` stored under one engine setting must
    not answer under another that would have refused the part."""
    monkeypatch.setattr(shared, "_TABLE", None)
    shared.prepare(100, 60)
    before = open_cache(configmod.override(Config(), section, **change), "gen")
    key = before.key(b"an encrypted zip, say")
    before.put(key, CLEAN)
    after = open_cache(Config(), "gen")
    assert after.get(after.key(b"an encrypted zip, say")) is None


def test_a_full_set_of_entries_that_never_expire_still_takes_a_new_one() -> None:
    """``cache.ttl = inf`` is a valid float: every slot's expiry is then inf, and the
    put must still pick one of the key's own slots (it wrote at offset -1)."""
    store = SharedStore(8, ttl=float("inf"))
    for i in range(50):
        store.put(f"k{i}", b"0")
    assert len(store) <= store.slots == 8
    assert store.get("k49") == b"0"

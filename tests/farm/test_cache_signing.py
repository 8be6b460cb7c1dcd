"""Signed cache entries without a daemon (scand.cache.signing, the PartCache that uses
it) and the ``[cache]`` keys that guard them: the secret file, Redis AUTH and TLS
files, and the redis package; each refused by ``check-config`` and ``serve`` alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scand.cache import client_options, lookup
from scand.cache.lookup import PartCache
from scand.cache.memory import MemoryStore
from scand.cache.signing import TAG_BYTES, Signer
from scand.config import ConfigError, from_mapping
from scand.events import CLEAN, Infected
from tests.conftest import EICAR, ROOT
from tests.farm.conftest import write_secret

DIGEST = "ab" * 32


def test_a_tag_binds_the_value_to_its_key_and_secret() -> None:
    s = Signer(b"0123456789abcdef")
    sealed = s.seal("p:k1", b"0")
    assert len(sealed) == TAG_BYTES + 1 and s.open("p:k1", sealed) == b"0"
    assert s.open("p:k2", sealed) is None  # moved to another key
    assert s.open("p:k1", sealed[:-1] + b"1") is None  # value changed
    assert s.open("p:k1", b"0") is None and s.open("p:k1", b"") is None  # no tag
    assert Signer(b"another secret, 16+").open("p:k1", sealed) is None
    # (key, value) boundaries cannot be shifted: "p:k1" + "0x" is not "p:k10" + "x".
    assert s.open("p:k10", s.seal("p:k1", b"0x")[:TAG_BYTES] + b"x") is None


def test_names_are_keyed_and_do_not_show_the_digest() -> None:
    a, b = Signer(b"0123456789abcdef"), Signer(b"fedcba9876543210")
    assert a.name(DIGEST) == a.name(DIGEST) != b.name(DIGEST)
    assert DIGEST not in a.name(DIGEST) and len(a.name(DIGEST)) == 32
    with pytest.raises(ValueError):
        Signer(b"")


class SharedStore(MemoryStore):
    shared = True


def test_a_shared_store_is_used_only_with_a_signer() -> None:
    assert not PartCache(SharedStore(10, 60), "p:", "gen", "pol").enabled
    assert PartCache(MemoryStore(10, 60), "p:", "gen", "pol").enabled  # per worker: unsigned


def test_a_forged_entry_is_a_counted_logged_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SharedStore(100, 60)
    logged: list[tuple[int, str]] = []
    cache = PartCache(store, "p:", "gen", "pol", signer=Signer(b"0123456789abcdef"),
                      on_bad_tag=lambda n, key: logged.append((n, key)))
    key = cache.key(EICAR)
    assert key.startswith("p:gen:pol:") and DIGEST not in key
    calls: list[bytes] = []

    def scan(data: bytes, where: str) -> Infected:
        calls.append(data)
        return Infected("Eicar-Test-Signature")

    store.put(key, b"0")  # what a writer to Redis would try
    now = [1000.0]
    monkeypatch.setattr(lookup.time, "monotonic", lambda: now[0])
    assert cache.scan(scan, EICAR, "w") == Infected("Eicar-Test-Signature")
    assert cache.take_counts() == (0, 1, 1) and logged == [(1, key)]
    # The scan's own (signed) entry replaced it: a hit now.
    assert cache.scan(scan, EICAR, "w") == Infected("Eicar-Test-Signature") and len(calls) == 1
    # More forgeries within the minute: counted, one line later with their count.
    for value in (b"0", b"\0" * TAG_BYTES + b"0", store.get(cache.key(b"other")) or b"x"):
        store.put(key, value)
        assert cache.scan(scan, EICAR, "w") == Infected("Eicar-Test-Signature")
    assert cache.take_counts() == (1, 3, 3) and len(logged) == 1
    now[0] += lookup.BAD_TAG_LOG_INTERVAL
    store.put(key, b"0")
    cache.scan(scan, EICAR, "w")
    assert logged[-1] == (4, key)
    # The base64 fast path reads through the same check: a forged 1: is no answer.
    store.put(cache._name("b64:" + DIGEST), b"1:Forged")
    assert cache._peek(cache._name("b64:" + DIGEST)) is None


def test_a_clean_verdict_moved_onto_an_infected_key_is_a_miss() -> None:
    store = SharedStore(100, 60)
    cache = PartCache(store, "p:", "gen", "pol", signer=Signer(b"0123456789abcdef"))
    cache.scan(lambda d, w: CLEAN, b"clean bytes", "w")
    store.put(cache.key(EICAR), store.get(cache.key(b"clean bytes")) or b"")
    assert cache.get(cache.key(EICAR)) is None and cache.bad_tags == 1


# -- the keys ----------------------------------------------------------------------------

def redis_cache(**keys: object) -> dict[str, object]:
    return {"cache": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379", **keys}}


def test_secret_file_required_private_and_long_enough(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cache\.secret_file: required"):
        from_mapping(redis_cache())
    with pytest.raises(ConfigError, match=r"cache\.secret_file: .*cannot read"):
        from_mapping(redis_cache(secret_file=str(tmp_path / "missing")))
    empty = write_secret(tmp_path, "", "empty")
    with pytest.raises(ConfigError, match=r"cache\.secret_file: .*is empty"):
        from_mapping(redis_cache(secret_file=str(empty)))
    short = write_secret(tmp_path, "short", "short")
    with pytest.raises(ConfigError, match=r"cache\.secret_file: .*at least 16"):
        from_mapping(redis_cache(secret_file=str(short)))
    good = write_secret(tmp_path)
    for mode in (0o640, 0o604, 0o620):
        good.chmod(mode)
        with pytest.raises(ConfigError, match=rf"cache\.secret_file: .*mode 0{mode:o}.*chmod"):
            from_mapping(redis_cache(secret_file=str(good)))
    good.chmod(0o400)
    cfg = from_mapping(redis_cache(secret_file=str(good))).cache
    assert cfg.secret == b"farm-secret-0123456789abcdef"
    assert "farm-secret" not in repr(cfg)  # never shown


def test_redis_auth_and_tls_keys(tmp_path: Path) -> None:
    secret = str(write_secret(tmp_path))
    pw = write_secret(tmp_path, "pw-1", "pw")
    cfg = from_mapping(redis_cache(secret_file=secret, redis_username="scand",
                                   redis_password_file=str(pw)))
    assert cfg.cache.redis_password == "pw-1" and "pw-1" not in repr(cfg)
    assert client_options(cfg) == {"username": "scand", "password": "pw-1"}
    pw.chmod(0o644)
    with pytest.raises(ConfigError, match=r"cache\.redis_password_file: .*mode 0644"):
        from_mapping(redis_cache(secret_file=secret, redis_password_file=str(pw)))
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    with pytest.raises(ConfigError, match=r"cache\.redis_ca_file: only with a rediss://"):
        from_mapping(redis_cache(secret_file=secret, redis_ca_file=str(ca)))
    tls = {"redis_url": "rediss://redis.example:6380", "secret_file": secret}
    with pytest.raises(ConfigError, match=r"cache\.redis_ca_file: .*cannot be read"):
        from_mapping(redis_cache(**tls, redis_ca_file=str(tmp_path / "none.pem")))
    with pytest.raises(ConfigError, match=r"cache\.redis_key_file: .*go together"):
        from_mapping(redis_cache(**tls, redis_cert_file=str(ca)))
    cfg = from_mapping(redis_cache(**tls, redis_ca_file=str(ca)))
    assert client_options(cfg) == {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                                   "ssl_ca_certs": str(ca)}


def run_cli(*args: str, block_redis: bool = False) -> subprocess.CompletedProcess[str]:
    code = ("import sys\n"
            + ("sys.modules['redis'] = None  # as if the package were not installed\n"
               if block_redis else "")
            + "from scand.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_check_config_and_serve_refuse_alike(tmp_path: Path, command: str) -> None:
    secret = write_secret(tmp_path)
    secret.chmod(0o644)
    toml = tmp_path / "scand.toml"
    toml.write_text(f'[cache]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:1"\n'
                    f'secret_file = "{secret}"\n')
    args = [command, str(toml)] if command == "check-config" else [
        command, "--config", str(toml), "--socket", str(tmp_path / "s")]
    out = run_cli(*args)
    assert out.returncode == 78 and "cache.secret_file" in out.stderr and "0644" in out.stderr
    secret.chmod(0o600)
    # The redis package missing: loud, naming the key and the fix (was: OK, then no cache).
    out = run_cli(*args, block_redis=True)
    assert out.returncode == 78, out
    assert "cache.backend" in out.stderr and "pip install 'scand[redis]'" in out.stderr
    if command == "check-config":
        assert run_cli(*args).returncode == 0

"""Config loading: unknown keys and bad values name the key; the example documents all."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from scand import config as configmod
from scand.config import Config, ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scand.toml"


def load_text(tmp_path: Path, text: str) -> Config:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return configmod.load(p)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[pool]\nworkrs = 2\n", "pool.workrs"),
        ("[pools]\nworkers = 2\n", "pools"),
        ("[pool]\nworkers = -1\n", "pool.workers"),
        ("[pool]\nworkers = 'two'\n", "pool.workers"),
        ("[pool]\nworkers = true\n", "pool.workers"),
        ("[server]\nsocket_mode = '0999'\n", "server.socket_mode"),
        ("[server]\nallowed_roots = ['relative']\n", "server.allowed_roots"),
        ("[server]\nallowed_roots = '/one'\n", "server.allowed_roots"),
        ("[engine]\nname = 'sophos'\n", "engine.name"),
        ("[log]\nlevel = 'loud'\n", "log.level"),
        ("server = 3\n", "server"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert str(info.value).startswith(key + ":")


def test_values_and_coercions(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[server]\nsocket_mode = '0600'\nidle_timeout = 5\n"
                    "allowed_roots = ['/var/spool']\n[pool]\nworkers = 3\n")
    assert cfg.server.socket_mode == 0o600
    assert cfg.server.idle_timeout == 5.0 and isinstance(cfg.server.idle_timeout, float)
    assert cfg.server.allowed_roots == ("/var/spool",)
    assert cfg.worker_count == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pool.workers = 4  # type: ignore[misc]


def test_not_toml_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_text(tmp_path, "[pool\n")
    with pytest.raises(ConfigError, match="cannot read"):
        configmod.load(tmp_path / "nope.toml")


def test_override_validates() -> None:
    cfg = configmod.override(Config(), "pool", workers=2, queue_size=None)
    assert cfg.pool.workers == 2 and cfg.pool.queue_size == Config().pool.queue_size
    with pytest.raises(ConfigError, match=r"pool\.workers"):
        configmod.override(Config(), "pool", workers=-3)


def test_example_documents_every_key_with_its_default() -> None:
    """examples/scand.toml lists every key, and its values are the defaults."""
    data = tomllib.loads(EXAMPLE.read_text())
    defaults = Config()
    for section in dataclasses.fields(Config):
        documented = data.get(section.name, {})
        current = getattr(defaults, section.name)
        for f in dataclasses.fields(current):
            if not f.init:
                continue  # read from a file the example names (cache.secret_file)
            assert f.name in documented, f"{section.name}.{f.name} is not in the example"
    assert configmod.from_mapping(data) == defaults


def test_farm_keys_and_sentinel_urls_are_checked(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef" * 4 + "\n")
    secret.chmod(0o600)
    cfg = load_text(tmp_path, '[farm]\nproxy_from = ["10.0.0.5/32"]\nagent = "127.0.0.1:5555"\n'
                    '[cache]\nbackend = "redis"\n'
                    'redis_url = "redis+sentinel://10.0.0.1:26379,[::1]:26380/mymaster"\n'
                    f'secret_file = "{secret}"\n')
    assert cfg.farm.proxy_from == ("10.0.0.5/32",) and cfg.farm.agent == "127.0.0.1:5555"
    for text, key in [('[farm]\nproxy_from = ["nonsense"]\n', "farm.proxy_from"),
                      ('[farm]\nagent = "5555"\n', "farm.agent"),
                      ('[farm]\nagent_allow = ["x"]\n', "farm.agent_allow"),
                      ("[farm]\ndrain_delay = -1\n", "farm.drain_delay"),
                      ('[cache]\nredis_url = "redis+sentinel://h:1/"\n', "cache.redis_url"),
                      ('[cache]\nredis_url = "redis+sentinel://h/m"\n', "cache.redis_url"),
                      ('[cache]\nredis_url = "http://h:1/m"\n', "cache.redis_url")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_text(tmp_path, text)


def test_sentinel_url_parsing() -> None:
    from scand.cache.connect import BadRedisUrl, parse_sentinel_url

    assert parse_sentinel_url("redis+sentinel://a:1,[::1]:2/mymaster") == (
        [("a", 1), ("::1", 2)], "mymaster")
    with pytest.raises(BadRedisUrl):
        parse_sentinel_url("redis+sentinel://a:1")

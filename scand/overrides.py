"""Which keys of the config file the command-line flags of ``scand serve`` replaced.

Flags override the file key by key (for trials and tests). A flag that silently
replaced a value the file set made the documented set-ups disagree (a unit's
``--socket`` beat the file's ``server.socket``), so ``scand serve`` names each
such key on standard error when it starts.
"""

from __future__ import annotations

from scand.config import Config

# (section, key) of every key a ``scand serve`` flag can set.
FLAG_KEYS = (
    ("server", "socket"), ("server", "socket_group"), ("server", "socket_mode"),
    ("engine", "name"), ("engine", "signatures"), ("clamd_front", "socket"),
    ("metrics", "listen"), ("milter", "socket"), ("pool", "workers"),
)


def overridden(from_file: Config, effective: Config) -> list[str]:
    """``section.key = <file's value>`` for each key the file set and a flag changed."""
    default = Config()
    out = []
    for section, key in FLAG_KEYS:
        mine = getattr(getattr(from_file, section), key)
        if mine != getattr(getattr(default, section), key) and \
                mine != getattr(getattr(effective, section), key):
            out.append(f"{section}.{key} = {mine!r}")
    return out

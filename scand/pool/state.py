"""A worker's lifecycle as data: one enum, one table of legal transitions (h11's
``_state.py`` shape). Every change of a worker's state goes through
:func:`transition`, which rejects an illegal one, so the pool's bookkeeping cannot
drift into a combination of flags that means nothing.

Whether a worker is running a job right now (``busy``) is not part of this: it is
orthogonal (a retiring worker may be busy or idle).

    STARTING ──► SERVING ──► RETIRING ──► REPLACED ──► EXITING ──► DEAD
        │           │            │                        ▲
        └───────────┴────────────┴────────────────────────┘
"""

from __future__ import annotations

import enum


class WorkerState(enum.Enum):
    STARTING = "starting"  # forked, loading its engine
    SERVING = "serving"  # in service
    RETIRING = "retiring"  # still serving while its warm replacement starts
    REPLACED = "replaced"  # the replacement is warm: stop it when it is next free
    EXITING = "exiting"  # being stopped or killed on purpose
    DEAD = "dead"  # reaped


_LEGAL: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.SERVING, WorkerState.EXITING}),
    WorkerState.SERVING: frozenset({WorkerState.RETIRING, WorkerState.EXITING}),
    WorkerState.RETIRING: frozenset({WorkerState.REPLACED, WorkerState.EXITING}),
    WorkerState.REPLACED: frozenset({WorkerState.EXITING}),
    WorkerState.EXITING: frozenset({WorkerState.EXITING, WorkerState.DEAD}),
    WorkerState.DEAD: frozenset({WorkerState.DEAD}),
}
# States in which a worker may be given a job.
IN_SERVICE = frozenset({WorkerState.SERVING, WorkerState.RETIRING})


class IllegalTransition(RuntimeError):
    """A bug in the pool: a worker asked to move where its lifecycle does not go."""


def transition(current: WorkerState, new: WorkerState) -> WorkerState:
    """``new`` if the lifecycle allows it from ``current``; else IllegalTransition."""
    if new not in _LEGAL[current]:
        raise IllegalTransition(f"worker state {current.value} -> {new.value}")
    return new

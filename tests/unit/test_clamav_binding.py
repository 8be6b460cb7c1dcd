"""The libclamav binding's pinned facts, checked against the installed libclamav12,
and the verdict mapping of the clamav engine."""

from __future__ import annotations

import ctypes

import pytest

from scand.engines.clamav import libclamav as cl
from scand.engines.clamav.engine import verdict_from_result
from scand.events import CLEAN, Infected, Reason, Unchecked


def test_library_matches_the_pinned_abi() -> None:
    lib = cl.open_library()  # checks cl_retver() and the cl_error_t texts
    assert cl.version().startswith("1.4.")
    engine = lib.cl_engine_new()
    try:
        cl.check_fields(lib, engine)  # the field positions hold 1.4's defaults
        assert ctypes.sizeof(cl.ScanOptions) == 20
        assert lib.cl_engine_set_num(engine, cl.CL_ENGINE_DISABLE_CACHE, 1) == cl.CL_CLEAN
        err = ctypes.c_int(0)
        assert lib.cl_engine_get_num(engine, cl.CL_ENGINE_DISABLE_CACHE, ctypes.byref(err)) == 1
    finally:
        lib.cl_engine_free(engine)


def test_a_moved_field_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = cl.open_library()
    engine = lib.cl_engine_new()
    try:
        # Pretend the header said MaxRecursion is field 3 (it is MaxFiles in 1.4).
        monkeypatch.setattr(cl, "_FIELD_DEFAULTS", {3: 17})
        with pytest.raises(cl.LibclamavError, match="does not fit"):
            cl.check_fields(lib, engine)
    finally:
        lib.cl_engine_free(engine)


def test_verdicts() -> None:
    assert verdict_from_result(cl.CL_CLEAN, [], "", []) == CLEAN
    assert verdict_from_result(cl.CL_VIRUS, ["Win.Test"], "", []) == Infected("Win.Test")
    # A signature beats a limit alert found in the same object.
    assert verdict_from_result(
        cl.CL_VIRUS, ["Heuristics.Limits.Exceeded.MaxFileSize", "Win.Test"], "", []
    ) == Infected("Win.Test")
    assert verdict_from_result(cl.CL_VIRUS, ["Heuristics.Limits.Exceeded.MaxFileSize"], "",
                               []) == Unchecked(Reason.TOO_LARGE,
                                                "Heuristics.Limits.Exceeded.MaxFileSize")
    for name, reason in [("Heuristics.Limits.Exceeded.MaxRecursion", Reason.TOO_DEEP),
                         ("Heuristics.Limits.Exceeded.MaxFiles", Reason.TOO_MANY_FILES),
                         ("Heuristics.Limits.Exceeded.MaxScanSize", Reason.TOO_LARGE),
                         ("Heuristics.Encrypted.Zip", Reason.ENCRYPTED)]:
        verdict = verdict_from_result(cl.CL_VIRUS, [name], "", [])
        assert isinstance(verdict, Unchecked) and verdict.reason == reason
    # CL_VIRUS with no name anywhere: never an empty name, never clean.
    nameless = verdict_from_result(cl.CL_VIRUS, [], "", [])
    assert isinstance(nameless, Unchecked)
    assert verdict_from_result(cl.CL_VIRUS, [], "From.Virname", []) == Infected("From.Virname")
    # Clean with an error message: not scanned.
    unread = verdict_from_result(cl.CL_CLEAN, [], "", ["fmap_readpage: pread error"])
    assert isinstance(unread, Unchecked) and unread.reason == Reason.UNREADABLE
    for code, reason in [(cl.CL_EMEM, Reason.MEMORY), (cl.CL_EMAP, Reason.MEMORY),
                         (cl.CL_EREAD, Reason.UNREADABLE), (cl.CL_ETIMEOUT, Reason.TIMEOUT)]:
        verdict = verdict_from_result(code, [], "", [])
        assert isinstance(verdict, Unchecked) and verdict.reason == reason

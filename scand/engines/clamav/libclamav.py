"""A small ctypes binding to libclamav 1.4 (Debian's ``libclamav12``). Stdlib only.

No compiler and no header are needed at install: the facts below are taken
from clamav.h of ClamAV 1.4 and are checked against the loaded library when
it is opened (:func:`open_library`), because C enums cross this boundary as
bare integers and a different release could move them:

* ``cl_retver()`` must be 1.x;
* the ``cl_error_t`` positions we rely on must have the texts ``cl_strerror``
  gives for them in 1.4 (``CL_VIRUS`` = 1, ``CL_EMEM`` = 20, ...);
* the ``cl_engine_field`` positions must hold 1.4's defaults on a new engine
  (``CL_ENGINE_MAX_RECURSION`` = 17, ``CL_ENGINE_CACHE_SIZE`` = 65536, ...).

Callbacks: libclamav reports each detection to ``clcb_virus_found`` (so a
``CL_VIRUS`` without a name, as a top-level file over MaxFileSize gives, still
has one) and its log messages to ``clcb_msg`` (so a descriptor it could not
read, which returns ``CL_CLEAN``, shows as an error). Both are process-wide
collectors here: a worker scans one object at a time, single-threaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass, field

# cl_error_t (clamav.h 1.4), pinned by position and checked against cl_strerror.
CL_CLEAN = 0
CL_VIRUS = 1
CL_EMALFDB = 4
CL_EOPEN = 8
CL_EREAD = 12
CL_EMAP = 19
CL_EMEM = 20
CL_ETIMEOUT = 21
CL_EMAXREC = 23
CL_EMAXSIZE = 24
CL_EMAXFILES = 25
CL_ERROR = 34
_ERROR_TEXTS = {
    CL_CLEAN: "No viruses detected",
    CL_VIRUS: "Virus(es) detected",
    CL_EMALFDB: "Malformed database",
    CL_EOPEN: "Can't open file or directory",
    CL_EREAD: "Can't read file",
    CL_EMAP: "Can't map file into memory",
    CL_EMEM: "Can't allocate memory",
    CL_ETIMEOUT: "Exceeded time limit",
    CL_EMAXREC: "Exceeded max recursion depth",
    CL_EMAXSIZE: "Exceeded max scan size",
    CL_EMAXFILES: "Exceeded max scan files",
    CL_ERROR: "Unspecified error",
}

# enum cl_engine_field (clamav.h 1.4), checked against a new engine's defaults.
CL_ENGINE_MAX_SCANSIZE = 0  # uint64
CL_ENGINE_MAX_FILESIZE = 1  # uint64
CL_ENGINE_MAX_RECURSION = 2  # uint32
CL_ENGINE_MAX_FILES = 3  # uint32
CL_ENGINE_TMPDIR = 13  # char *
CL_ENGINE_KEEPTMP = 14  # uint32
CL_ENGINE_CACHE_SIZE = 24  # uint32
CL_ENGINE_DISABLE_CACHE = 25  # uint32
CL_ENGINE_MAX_SCANTIME = 31  # uint32, milliseconds
_FIELD_DEFAULTS = {
    CL_ENGINE_MAX_SCANSIZE: 400 * 1024 * 1024,
    CL_ENGINE_MAX_FILESIZE: 100 * 1024 * 1024,
    CL_ENGINE_MAX_RECURSION: 17,
    CL_ENGINE_MAX_FILES: 10_000,
    CL_ENGINE_KEEPTMP: 0,
    CL_ENGINE_CACHE_SIZE: 65536,
    CL_ENGINE_DISABLE_CACHE: 0,
    CL_ENGINE_MAX_SCANTIME: 120_000,
}

# cl_load options: CL_DB_STDOPT = PHISHING | PHISHING_URLS | BYTECODE.
CL_DB_STDOPT = 0x2 | 0x8 | 0x2000

# struct cl_scan_options bits.
CL_SCAN_GENERAL_HEURISTICS = 0x4
# ARCHIVE ELF PDF SWF HWP3 XMLDOCS MAIL OLE2 HTML PE ONENOTE IMAGE: every parser.
CL_SCAN_PARSE_ALL = 0xFFF
CL_SCAN_PARSE_MAIL = 0x40  # its MIME parser (mbox.c), TNEF, and the phishing checks
CL_SCAN_HEURISTIC_EXCEEDS_MAX = 0x4
CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE = 0x40

# enum cl_msg severities.
CL_MSG_INFO_VERBOSE = 32
CL_MSG_WARN = 64
CL_MSG_ERROR = 128


class ScanOptions(ctypes.Structure):
    """struct cl_scan_options: five uint32_t bit fields, in this order."""

    _fields_ = [("general", ctypes.c_uint32), ("parse", ctypes.c_uint32),
                ("heuristic", ctypes.c_uint32), ("mail", ctypes.c_uint32),
                ("dev", ctypes.c_uint32)]


VIRUS_FOUND = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_void_p)


class LibclamavError(Exception):
    """libclamav is missing, is not a release this binding knows, or failed a call."""


@dataclass
class Collector:
    """What libclamav's callbacks reported since the last :meth:`reset`."""

    names: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.names.clear()
        self.errors.clear()
        self.warnings.clear()


COLLECTOR = Collector()


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace").strip()


def _virus_found(fd: int, name: bytes | None, context: int | None) -> None:
    COLLECTOR.names.append(_text(name))


def _message(severity: int, full: bytes | None, msg: bytes | None,
                context: int | None) -> None:
    if severity >= CL_MSG_ERROR:
        COLLECTOR.errors.append(_text(msg))
    elif severity >= CL_MSG_WARN:
        COLLECTOR.warnings.append(_text(msg))


# The C function pointers; module globals, so they live as long as the process.
_on_virus = VIRUS_FOUND(_virus_found)
_on_message = MESSAGE(_message)


def _declare(lib: ctypes.CDLL) -> None:
    p, i, u, ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_longlong
    s = ctypes.c_char_p
    sigs = [
        ("cl_init", i, [u]),
        ("cl_retver", s, []),
        ("cl_strerror", s, [i]),
        ("cl_engine_new", p, []),
        ("cl_engine_free", i, [p]),
        ("cl_engine_compile", i, [p]),
        ("cl_engine_set_num", i, [p, i, ll]),
        ("cl_engine_get_num", ll, [p, i, ctypes.POINTER(i)]),
        ("cl_engine_set_str", i, [p, i, s]),
        ("cl_load", i, [s, p, ctypes.POINTER(u), u]),
        ("cl_engine_set_clcb_virus_found", None, [p, VIRUS_FOUND]),
        ("cl_set_clcb_msg", None, [MESSAGE]),
        ("cl_scandesc", i, [i, s, ctypes.POINTER(s), ctypes.POINTER(ctypes.c_ulong), p,
                            ctypes.POINTER(ScanOptions)]),
        ("cl_fmap_open_memory", p, [p, ctypes.c_size_t]),
        ("cl_fmap_close", None, [p]),
        ("cl_scanmap_callback", i, [p, s, ctypes.POINTER(s), ctypes.POINTER(ctypes.c_ulong),
                                    p, ctypes.POINTER(ScanOptions), p]),
    ]
    for name, restype, argtypes in sigs:
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


_LIB: ctypes.CDLL | None = None


def open_library(path: str = "") -> ctypes.CDLL:
    """Load libclamav once per process (``path``, or the system's), check it is a
    release we know, call cl_init."""
    global _LIB
    if _LIB is not None:
        return _LIB
    name = path or ctypes.util.find_library("clamav") or "libclamav.so.12"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise LibclamavError(f"libclamav not found ({exc}): install libclamav12") from exc
    _declare(lib)
    version = _text(lib.cl_retver())
    if not version.startswith("1."):
        raise LibclamavError(f"libclamav {version}: this binding knows the 1.x ABI only")
    for code, text in _ERROR_TEXTS.items():
        got = _text(lib.cl_strerror(code))
        if got != text:
            raise LibclamavError(f"libclamav {version}: cl_error_t {code} is {got!r}, "
                                 f"expected {text!r}; the binding does not fit this release")
    lib.cl_set_clcb_msg(_on_message)  # before cl_init: its own messages come here too
    ret = lib.cl_init(0)
    if ret != CL_CLEAN:
        raise LibclamavError(f"cl_init: {_text(lib.cl_strerror(ret))}")
    _LIB = lib
    return lib


def version() -> str:
    return _text(open_library().cl_retver())


def strerror(code: int) -> str:
    return _text(open_library().cl_strerror(code))


def check_fields(lib: ctypes.CDLL, engine: int) -> None:
    """On a new engine, each field we set must hold its 1.4 default (proves the positions)."""
    for fld, default in _FIELD_DEFAULTS.items():
        err = ctypes.c_int(0)
        got = lib.cl_engine_get_num(engine, fld, ctypes.byref(err))
        if err.value != CL_CLEAN or got != default:
            raise LibclamavError(f"cl_engine_field {fld} holds {got} (error {err.value}), "
                                 f"expected {default}; the binding does not fit this release")

"""The ``clamav`` engine: libclamav in the worker itself, loaded once per generation.

The generation zygote (:class:`scand.worker.zygote.Generation`) builds one
engine per signature generation: ``cl_engine_new``, the limits, ``cl_load`` of ``--signatures DIR``
(``.cvd``/``.cld``/``.cud``/``.hdb``/``.ndb``/``.ldb``/...), ``cl_engine_compile``.
Every worker forked from it shares the compiled engine copy-on-write; scanning
does not write to it, so a worker's private memory stays small.

Limits come from scand's own keys: ``limits.max_file_size`` -> MaxFileSize,
``content.max_bytes`` -> MaxScanSize, ``content.max_depth`` + 1 -> MaxRecursion,
``content.max_parts`` -> MaxFiles, 90 % of ``pool.scan_timeout`` -> MaxScanTime.
The exceeds-max alerts and the encrypted-archive heuristic are on and become
``-1:too-large`` / ``-1:too-deep`` / ``-1:too-many-files`` / ``-1:timeout`` /
``-1:encrypted``. The clean cache is off: it would make a second copy of a
42.zip-style bomb clean.

Who parses the mail (``clamav.mail_parser``, :func:`mail_parser`):

* ``scand`` (and ``auto``, the default): the engine ``takes_walked``. The
  Scanner walks once and hands it every part the walk decoded
  (:meth:`ClamavEngine.scan_walked`); bytes the walker read as a message (the
  message itself, a message/rfc822 part) are scanned with every parser but
  CL_SCAN_PARSE_MAIL (their raw bytes still meet every signature, the
  mail-target ones too), every other part with every parser (archives,
  documents, TNEF...). libclamav's MIME parser, its temp files and the walk's
  second pass are gone (bench/README.md, "libclamav takes the walker's
  parts"). libclamav's phishing checks (``.pdb``/``.wdb``/``.gdb`` lists) run
  only inside its mail parser, so when the signature directory can hold them
  (such a file, or a ``.cvd``/``.cld``/``.cud`` container) each text part of a
  message that may hold a link is handed inside a minimal message with the
  mail parser on
  (:meth:`ClamavEngine.walked_form`, :mod:`scand.engines.clamav.urlcheck`).
* ``libclamav``: the whole file, every parser on; the Scanner's names-only walk
  runs beside it, as for clamd.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import tempfile
from typing import TYPE_CHECKING

from scand import safedir
from scand.engines.base import Engine, EngineError, EngineInfo, Target
from scand.engines.clamav import libclamav as cl
from scand.engines.clamav import tmpdir, urlcheck
from scand.events import CLEAN, Infected, Reason, Unchecked, Verdict
from scand.policy import Policy

if TYPE_CHECKING:
    from scand.config import Config

# Alert names (prefixes) that say "not fully scanned", not "infected".
HEURISTIC_REASONS = (
    ("Heuristics.Limits.Exceeded.MaxFileSize", Reason.TOO_LARGE),
    ("Heuristics.Limits.Exceeded.MaxScanSize", Reason.TOO_LARGE),
    ("Heuristics.Limits.Exceeded.MaxRecursion", Reason.TOO_DEEP),
    ("Heuristics.Limits.Exceeded.MaxFiles", Reason.TOO_MANY_FILES),
    ("Heuristics.Limits.Exceeded.MaxScanTime", Reason.TIMEOUT),
    ("Heuristics.Limits.Exceeded", Reason.TOO_LARGE),
    ("Heuristics.Encrypted", Reason.ENCRYPTED),
)
ERROR_REASONS = {
    cl.CL_EMEM: Reason.MEMORY,
    cl.CL_EMAP: Reason.MEMORY,
    cl.CL_ETIMEOUT: Reason.TIMEOUT,
    cl.CL_EMAXREC: Reason.TOO_DEEP,
    cl.CL_EMAXSIZE: Reason.TOO_LARGE,
    cl.CL_EMAXFILES: Reason.TOO_MANY_FILES,
}
# Files that hold (or, as containers, may hold) phishing lists: PDB, WDB, GDB.
PHISHING_SUFFIXES = (".pdb", ".wdb", ".gdb", ".cvd", ".cld", ".cud")
EICAR_NDB = ("Eicar-Test-Signature:0:*:" + (
    b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").hex() + "\n")


def mail_parser(config: Config) -> str:
    """``clamav.mail_parser`` resolved: "scand" or "libclamav" (see the module)."""
    chosen = config.clamav.mail_parser
    return "scand" if chosen == "auto" else chosen


def may_hold_phishing(signatures: str) -> bool:
    """True when ``signatures`` (a directory cl_load reads, or one file) holds a file
    libclamav may load phishing lists from. Unreadable: False (cl_load fails anyway)."""
    if not signatures:
        return False  # the EICAR test signature only
    try:
        names = os.listdir(signatures) if os.path.isdir(signatures) else [signatures]
    except OSError:
        return False
    return any(n.lower().endswith(PHISHING_SUFFIXES) for n in names)


def heuristic_reason(name: str) -> Reason | None:
    for prefix, reason in HEURISTIC_REASONS:
        if name.startswith(prefix):
            return reason
    return None


def verdict_from_result(ret: int, names: list[str], virname: str, errors: list[str]) -> Verdict:
    """One scan's return code and callback reports -> a verdict. Never an empty name,
    never clean for an object libclamav said it could not read."""
    if ret == cl.CL_VIRUS:
        found = [n for n in [*names, virname] if n]
        real = [n for n in found if heuristic_reason(n) is None]
        if real:
            return Infected(real[0].replace(" ", "_"))
        if found:
            reason = heuristic_reason(found[0])
            assert reason is not None
            return Unchecked(reason, found[0])
        return Unchecked(Reason.INTERNAL, "libclamav: a detection without a name")
    if ret == cl.CL_CLEAN:
        if errors:
            return Unchecked(Reason.UNREADABLE, f"libclamav: {errors[0][:200]}")
        return CLEAN
    reason = ERROR_REASONS.get(ret, Reason.UNREADABLE)
    return Unchecked(reason, f"libclamav: {cl.strerror(ret)}")


class ClamavEngine(Engine):
    """One compiled libclamav engine; scans descriptors (paths) and memory (streams)."""

    name = "clamav"
    wants_parts = False  # takes_walked instead, unless libclamav parses the mail

    def __init__(self, config: Config) -> None:
        self.config = config
        # libclamav cuts archive members at MaxFileSize and may call them clean: the
        # names-only walk beside it reports larger members (scand.engines.base).
        self.member_limit = config.limits.max_file_size
        try:
            self.lib = cl.open_library(config.clamav.library)
        except cl.LibclamavError as exc:
            raise EngineError(str(exc)) from exc
        self.handle: int | None = None
        self.signatures = 0
        self.version = cl.version()
        self.options = cl.ScanOptions(
            general=cl.CL_SCAN_GENERAL_HEURISTICS,
            parse=cl.CL_SCAN_PARSE_ALL,
            heuristic=cl.CL_SCAN_HEURISTIC_EXCEEDS_MAX | (
                cl.CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE if config.clamav.alert_encrypted else 0),
        )
        # For bytes the walker read as a message: everything but libclamav's mail parser.
        self.message_options = cl.ScanOptions(
            general=self.options.general, parse=self.options.parse & ~cl.CL_SCAN_PARSE_MAIL,
            heuristic=self.options.heuristic)
        self.mail_parser = mail_parser(config)
        self.takes_walked = self.mail_parser == "scand"
        # Text parts go in a message with the mail parser on, for libclamav's phishing
        # check (scand.engines.clamav.urlcheck), when the signatures can hold its lists.
        self.url_check = self.takes_walked and may_hold_phishing(config.engine.signatures)
        self.owner = True  # False in a forked worker: the zygote owns the engine
        self.tmp = ""
        self.base = ""  # the zygote's temp directory (tmpdir.make_base)

    @classmethod
    def from_config(cls, config: Config) -> ClamavEngine:
        engine = cls(config)
        try:
            engine._load()
        except BaseException:
            engine._free()
            raise
        return engine

    def _call(self, what: str, ret: int) -> None:
        if ret != cl.CL_CLEAN:
            detail = "; ".join(cl.COLLECTOR.errors[-3:])
            raise EngineError(f"libclamav {what}: {cl.strerror(ret)}"
                              + (f" ({detail})" if detail else ""))

    def _load(self) -> None:
        lib, cfg = self.lib, self.config
        try:
            base = self.base = tmpdir.make_base(cfg)
        except OSError as exc:
            raise EngineError(str(exc) if isinstance(exc, safedir.UnsafeDirectory)
                              else f"clamav.tmp_dir: {exc}") from exc
        self.handle = lib.cl_engine_new()
        if not self.handle:
            raise EngineError("libclamav: cl_engine_new failed")
        try:
            cl.check_fields(lib, self.handle)
        except cl.LibclamavError as exc:
            raise EngineError(str(exc)) from exc
        limits = {
            cl.CL_ENGINE_MAX_FILESIZE: cfg.limits.max_file_size,
            cl.CL_ENGINE_MAX_SCANSIZE: cfg.content.max_bytes,
            # libclamav counts some containers twice (gzip: the stream, then its
            # content): one extra level keeps the default at ClamAV's own 17.
            cl.CL_ENGINE_MAX_RECURSION: cfg.content.max_depth + 1,
            cl.CL_ENGINE_MAX_FILES: cfg.content.max_parts,
            cl.CL_ENGINE_MAX_SCANTIME: max(1, int(cfg.pool.scan_timeout * 900)),
            cl.CL_ENGINE_DISABLE_CACHE: 1,  # the cache changes verdicts (42.zip twice)
        }
        for fld, value in limits.items():
            self._call(f"cl_engine_set_num({fld})", lib.cl_engine_set_num(self.handle, fld, value))
        self._call("tmpdir", lib.cl_engine_set_str(self.handle, cl.CL_ENGINE_TMPDIR,
                                                   base.encode()))
        lib.cl_engine_set_clcb_virus_found(self.handle, cl._on_virus)
        cl.COLLECTOR.reset()
        sigs = ctypes.c_uint(0)
        sigdir = cfg.engine.signatures
        if sigdir:
            if not os.path.exists(sigdir):
                raise EngineError(f"{sigdir}: no such signature directory")
            self._call(f"cl_load {sigdir}", lib.cl_load(
                sigdir.encode(), self.handle, ctypes.byref(sigs), cl.CL_DB_STDOPT))
        else:  # like the built-in engine: at least the EICAR test signature
            with tempfile.NamedTemporaryFile("w", suffix=".ndb", dir=base) as fh:
                fh.write(EICAR_NDB)
                fh.flush()
                self._call("cl_load (EICAR)", lib.cl_load(
                    fh.name.encode(), self.handle, ctypes.byref(sigs), cl.CL_DB_STDOPT))
        self._call("cl_engine_compile", lib.cl_engine_compile(self.handle))
        self.signatures = sigs.value

    # -- per worker ------------------------------------------------------------------

    def forked(self) -> None:
        """In a new worker: own temp directory; never free the zygote's engine."""
        self.owner = False
        self.tmp = tmpdir.make_worker_dir(self.base)
        _fixed_mmap_threshold()
        # Only this worker's copy of the engine field changes (one page, copy-on-write).
        self._call("tmpdir", self.lib.cl_engine_set_str(self.handle, cl.CL_ENGINE_TMPDIR,
                                                        self.tmp.encode()))

    def leftovers(self) -> tuple[str, ...]:
        """libclamav's files of a scan in progress, if the worker is killed mid-scan."""
        return (self.tmp,) if self.tmp else ()

    def close(self) -> None:
        if self.owner:
            self._free()
        else:
            # A worker's copy is left alone: freeing it would touch (copy) every page.
            tmpdir.remove_worker_dir(self.tmp)

    def _free(self) -> None:
        if self.handle:
            self.lib.cl_engine_free(self.handle)
            self.handle = None
            _malloc_trim()
        tmpdir.remove_base(self.config, self.base)


    # -- scanning -----------------------------------------------------------------------

    def scan_file(self, target: Target) -> Verdict:
        # libclamav answers CL_CLEAN, silently, for pipes, sockets and directories.
        if not stat.S_ISREG(os.fstat(target.fd).st_mode):
            return Unchecked(Reason.NOT_ALLOWED, f"{target.path}: not a regular file")
        if target.data is not None:  # already read for the walk: no second read or map
            return self.scan_bytes(target.data, target.path)  # (0.1 ms a message less)
        virname = ctypes.c_char_p()
        scanned = ctypes.c_ulong(0)
        cl.COLLECTOR.reset()
        ret = self.lib.cl_scandesc(target.fd, target.path.encode(), ctypes.byref(virname),
                                   ctypes.byref(scanned), self.handle, ctypes.byref(self.options))
        return self._verdict(ret, virname)

    def scan_bytes(self, data: bytes, name: str) -> Verdict:
        return self._scan_map(data, name, self.options)

    def scan_walked(self, data: bytes, name: str, parsed_message: bool) -> Verdict:
        """A part the walker decoded; a message it walked is not parsed as mail again."""
        return self._scan_map(data, name, self.message_options if parsed_message
                              else self.options)

    def walked_form(self, data: bytes, mime: str, alt: bool) -> bytes | None:
        """A text part of a message, when phishing lists may be loaded: the part as
        the base64 body of a one-part message, which libclamav reads with its mail
        parser (the phishing check), decodes back to the part's bytes and scans
        with every signature. None: the part itself."""
        if self.url_check and urlcheck.checked(data, mime, alt):
            return urlcheck.wrap(data, mime)
        return None

    def _scan_map(self, data: bytes, name: str, options: cl.ScanOptions) -> Verdict:
        buf = ctypes.c_char_p(data)  # points into ``data``: no copy; kept alive below
        fmap = self.lib.cl_fmap_open_memory(ctypes.cast(buf, ctypes.c_void_p), len(data))
        if not fmap:
            return Unchecked(Reason.MEMORY, "libclamav: cl_fmap_open_memory failed")
        virname = ctypes.c_char_p()
        scanned = ctypes.c_ulong(0)
        cl.COLLECTOR.reset()
        try:
            ret = self.lib.cl_scanmap_callback(
                fmap, (name or "stream").encode(), ctypes.byref(virname), ctypes.byref(scanned),
                self.handle, ctypes.byref(options), None)
        finally:
            self.lib.cl_fmap_close(fmap)
            del buf
        return self._verdict(ret, virname)

    def _verdict(self, ret: int, virname: ctypes.c_char_p) -> Verdict:
        name = (virname.value or b"").decode("utf-8", "replace").strip() if ret == cl.CL_VIRUS \
            else ""
        verdict = verdict_from_result(ret, list(cl.COLLECTOR.names), name,
                                      list(cl.COLLECTOR.errors))
        if (isinstance(verdict, Unchecked) and verdict.reason == Reason.ENCRYPTED
                and self.config.content.encrypted == "banned"):
            # As the walker answers for encrypted members: the admin bans them.
            kind = verdict.detail.removeprefix("Heuristics.Encrypted.") or "archive"
            return Policy(self.config.policy).check_encrypted(kind)
        return verdict

    def info(self) -> EngineInfo:
        return EngineInfo(f"{self.name}/{self.version}", f"sigs={self.signatures}",
                          detail=f"libclamav {self.version}, mail parser: {self.mail_parser}"
                          + (", phishing check: text parts" if self.url_check else ""))


def _malloc_trim() -> None:
    """Give a freed set's heap pages back to the kernel (glibc keeps them otherwise).
    The pool never frees a set this way (its generation zygote exits instead); this
    is for a process that loads and closes engines itself."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


# glibc's M_MMAP_THRESHOLD (mallopt parameter -3). Fixed at 256 KiB, a large buffer
# (a decoded attachment, a mapped member) is its own mapping and goes back to the
# kernel when freed; by default glibc raises the threshold after the first large
# free and keeps later ones in the heap. Measured over the 1,000-message bench
# corpus: a worker's private memory 18 MiB -> 6-7 MiB, CPU per message +3-5 %.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def _fixed_mmap_threshold() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)

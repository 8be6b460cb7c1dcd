"""One milter connection (trio): protocol events in, the pool's verdict out as a milter reply.

A connection carries any number of messages (and, after ``K``, SMTP
sessions). Each message is assembled in a :class:`MessageBuffer` (memory up to
the spill size, then a private spool file) and scanned at end of message by
the same pool as the Sophie socket: in memory as a stream, spilled by path.
Verdicts map to replies as ``[milter]`` says; anything not fully scanned is a
``451 4.7.1`` tempfail, never an accept. Exactly one ``milter_message`` log
line per message, with the MTA's queue id (``{i}``) and the Message-ID.
"""

from __future__ import annotations

import contextlib

import structlog
import trio

import scand
from scand.config import MilterConfig
from scand.events import Clean, Infected, NeedData, Reason, Unchecked, Verdict, verdict_label
from scand.fronts.budget import Held
from scand.fronts.transport import RECV_SIZE, Transport
from scand.milter import protocol as mp
from scand.milter.message import MessageBuffer
from scand.service import Service
from scand.worker.wire import Outcome

log = structlog.get_logger("scand.milter")

# Stopping: after answering a message, wait this long for the MTA's QUIT before closing.
DRAIN_LINGER = 5.0
# A name longer than this is cut in replies and headers.
MAX_NAME = 200
# Macros held per connection: Postfix and Sendmail send about 20 short ones (queue id,
# addresses, auth names); scand reads only {i}. Past either bound nothing more is kept
# and every message on the connection is a tempfail (300 16 KiB x 63 packets held 300 MiB).
MAX_MACROS = 64
MAX_MACRO_BYTES = 64 * 1024


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, **values: str) -> str:
    """``{name}`` and ``{reason}`` filled in; unknown fields become empty, never an error."""
    try:
        return template.format_map(_Blank(values))
    except (ValueError, IndexError, AttributeError):
        return template


class MilterSession:
    """Serve one accepted milter connection until QUIT, EOF, error or drain."""

    def __init__(self, transport: Transport, service: Service, spool_dir: str,
                 peer: str = "", held: Held | None = None) -> None:
        self.transport = transport
        self.held = held if held is not None else Held(None)  # the daemon-wide memory budget
        self.service = service
        self.spool_dir = spool_dir
        self.peer = peer
        self.parser = mp.MilterParser()
        self.macros: dict[str, str] = {}
        self.macro_bytes = 0
        self.macros_over = False  # a bound was passed: tempfail until the session ends
        self.message: MessageBuffer | None = None
        self.draining = False
        self.messages = 0
        self._idle = trio.CancelScope()
        self._linger = False

    @property
    def cfg(self) -> MilterConfig:
        return self.service.config.milter

    @property
    def mid_message(self) -> bool:
        return self.message is not None

    def drain(self) -> None:
        self.stop_when_idle()

    def fault_reply(self) -> bytes:
        """A tempfail: the MTA defers the message (never an accept)."""
        return mp.reply_code(fill(self.cfg.tempfail_reply, reason="internal", name=""))

    def stop_when_idle(self) -> None:
        """Drain: a connection between messages closes now, one inside a message finishes it."""
        self.draining = True
        if not self.mid_message:
            self._idle.cancel()

    async def run(self) -> None:
        """Serve until done. The MTA going away is an end of input; any other error
        (a spool write failing) is a fault: the accept loop answers it with a tempfail."""
        try:
            await self._loop()
        finally:
            if self.message is not None:
                self.message.discard()
                self.message = None
            self._forget_macros()
            self.parser = mp.MilterParser()  # its buffer, freed now
            self.held.release()

    async def _loop(self) -> None:
        while True:
            event = self.parser.next_event()
            if isinstance(event, NeedData):
                timeout = self.cfg.idle_timeout
                if self.draining and not self.mid_message:
                    if not self._linger:
                        return
                    # Just answered while stopping: let the MTA say QUIT (or start its
                    # next message, which gets the tempfail) rather than hang up on it.
                    self._linger, timeout = False, DRAIN_LINGER
                data = b""
                with trio.move_on_after(timeout) as self._idle:
                    data = await self.transport.receive_some(RECV_SIZE)
                if not data:
                    return  # EOF, idle timeout or drain
                self.parser.receive_data(data)
                if not await self._charge():
                    return
                continue
            if not await self._handle(event) or not await self._charge():
                return

    def _bytes_held(self) -> int:
        """Request bytes this connection holds in memory: unparsed input, macros and
        the part of the message not spilled to the spool."""
        held = self.parser.buffered
        held += sum(len(k) + len(v) for k, v in self.macros.items())
        buf = self.message
        if buf is not None and not buf.spilled and not buf.too_large:
            held += buf.size
        return held

    async def _charge(self) -> bool:
        """Hold exactly what is buffered from the budget; over it, tempfail and close."""
        if self.held.resize(self._bytes_held()):
            return True
        log.warning("request_rejected", front="milter", reason="busy", detail="memory budget",
                    peer=self.peer)
        await self._send(mp.reply_code(fill(self.cfg.tempfail_reply, reason="busy", name="")))
        return False

    async def _handle(self, event: mp.MilterEvent) -> bool:
        """Act on one event; False ends the connection."""
        if isinstance(event, mp.Negotiate):
            await self._send(self.parser.negotiate(event))
            return True
        if isinstance(event, mp.ProtocolError):
            log.warning("milter_protocol_error", detail=event.detail, peer=self.peer)
            return False
        if isinstance(event, mp.Macros):
            self._keep_macros(event.values)
            return True
        if isinstance(event, mp.Quit):
            self._end_message()
            self._forget_macros()
            return event.new_connection and not self.draining
        if isinstance(event, mp.Abort):
            self._end_message()
            return True
        if isinstance(event, mp.Header):
            self._buffer().header(event.name, event.value)
        elif isinstance(event, mp.Body):
            self._buffer().body(event.data)
        elif isinstance(event, mp.EndOfMessage):
            buf = self._buffer()
            buf.body(event.data)
            buf.finish()
            try:
                for reply in await self._verdict_replies(buf):
                    await self._send(reply)
            finally:
                self._end_message()
            self._linger = self.draining
            return True
        if self.parser.needs_reply(event):
            await self._send(mp.reply_continue())
        return True

    def _keep_macros(self, values: dict[str, str]) -> None:
        """Hold a macro packet's values, within :data:`MAX_MACROS` and :data:`MAX_MACRO_BYTES`."""
        if self.macros_over:
            return
        held = dict(self.macros)
        held.update(values)
        size = sum(len(k) + len(v) for k, v in held.items())
        if len(held) > MAX_MACROS or size > MAX_MACRO_BYTES:
            self.macros_over = True
            self.macros, self.macro_bytes = {"i": self.macros.get("i", "")}, 0
            return
        self.macros, self.macro_bytes = held, size

    def _forget_macros(self) -> None:
        self.macros, self.macro_bytes, self.macros_over = {}, 0, False

    def _buffer(self) -> MessageBuffer:
        if self.message is None:
            cfg = self.service.config
            limit = self.cfg.max_message_bytes or cfg.limits.max_file_size
            self.message = MessageBuffer(self.cfg.spill_bytes, limit, self.spool_dir)
        return self.message

    def _end_message(self) -> None:
        if self.message is not None:
            self.message.discard()
            self.message = None
        self.macros.pop("i", None)
        if self.draining:
            self._idle.cancel()

    # -- scanning -------------------------------------------------------------------

    async def _verdict_replies(self, buf: MessageBuffer) -> list[bytes]:
        t0 = trio.current_time()
        result = await self._scan(buf)
        elapsed = trio.current_time() - t0
        verdict = result.verdict
        action, replies = self._replies(verdict)
        self.messages += 1
        self.service.stats.record(verdict, elapsed, result.bytes)
        fields: dict[str, object] = {
            "queue_id": self.macros.get("i", ""),
            "message_id": buf.message_id,
            "verdict": verdict_label(verdict),
            "action": action,
            "bytes": buf.size,
            "spilled": buf.spilled,
            "ms": round(elapsed * 1000, 2),
            "worker": result.worker,
        }
        if isinstance(verdict, Infected):
            fields["virus"] = verdict.name
        elif isinstance(verdict, Unchecked):
            fields["detail"] = verdict.detail
        log.info("milter_message", **fields)
        return replies

    async def _scan(self, buf: MessageBuffer) -> Outcome:
        if self.service.draining:
            return Outcome(Unchecked(Reason.SHUTTING_DOWN))
        if buf.too_large:
            return Outcome(Unchecked(Reason.TOO_LARGE, f"{buf.size}>{buf.max_bytes}"))
        if buf.error:
            return Outcome(Unchecked(Reason.INTERNAL, buf.error))
        if self.macros_over:
            return Outcome(Unchecked(Reason.TOO_LARGE, f"macros over {MAX_MACROS} or "
                                                       f"{MAX_MACRO_BYTES} bytes"))
        pool = self.service.pool
        result = Outcome(Unchecked(Reason.INTERNAL, "no result"))
        async with trio.open_nursery() as nursery:
            if self.cfg.progress_interval > 0:
                nursery.start_soon(self._progress, self.cfg.progress_interval)
            if buf.path is not None:
                result = await pool.scan(path=buf.path)
            else:
                result = await pool.scan(data=buf.data())
            nursery.cancel_scope.cancel()
        return result

    async def _progress(self, interval: float) -> None:
        """Tell the MTA the scan is alive, so a slow scan does not hit its timeout."""
        while True:
            await trio.sleep(interval)
            with trio.CancelScope(shield=True), contextlib.suppress(OSError):
                await self._send(mp.reply_progress())

    def _replies(self, verdict: Verdict) -> tuple[str, list[bytes]]:
        """(action label, reply packets) for a verdict."""
        cfg = self.cfg
        can_headers = self.parser.can(mp.F_ADDHDRS)
        if isinstance(verdict, Clean):
            replies = []
            if cfg.add_headers and can_headers:
                replies = self._status_headers("Clean")
            return "continue", [*replies, mp.reply_continue()]
        if isinstance(verdict, Unchecked):
            line = fill(cfg.tempfail_reply, reason=str(verdict.reason), name="")
            return "tempfail", [mp.reply_code(line)]
        name = verdict.name[:MAX_NAME]
        action = cfg.infected_action
        if action == "quarantine" and self.parser.can(mp.F_QUARANTINE):
            extra = self._status_headers(f"Infected ({name})") if can_headers else []
            return "quarantine", [mp.reply_quarantine(f"scand: {name}"), *extra,
                                  mp.reply_continue()]
        if action == "discard":
            return "discard", [mp.reply_discard()]
        if action == "accept" and can_headers:
            return "accept", [*self._status_headers(f"Infected ({name})"), mp.reply_continue()]
        # reject, or an action the MTA did not allow at negotiation: never pass it silently
        return "reject", [mp.reply_code(fill(cfg.reject_reply, name=name, reason="infected"))]

    def _status_headers(self, status: str) -> list[bytes]:
        return [mp.reply_add_header("X-Virus-Scanned", f"scand {scand.__version__}"),
                mp.reply_add_header("X-Virus-Status", status)]

    async def _send(self, data: bytes) -> None:
        await self.transport.send_all(data)

"""A live call's rows in storage, the same whoever serves the caller after an escalation, and the
server's side of crash safety (:class:`RecordKeeper`): a call's trace is written while it happens,
so a server killed mid-call leaves the call's trace up to then, and the next start closes the call."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from voicebot.engines import Engines
from voicebot.events import CallEvent, LanguageChanged
from voicebot.handoff.record import HandoffRecord
from voicebot.storage import Storage

log = logging.getLogger("voicebot.server")
FLUSH_INTERVAL_S = 0.5  # a crash loses at most about this much of a live call's trace
RETENTION_INTERVAL_S = 3600.0  # how often calls past their retention are looked for (and at start)
CUT_CALL_REASON = "server_restart"  # the end reason of a call a crash cut (outcome ``interrupted``)


def wall_offset() -> float:
    """What turns an event's monotonic ``t`` into wall-clock time."""
    return time.time() - time.monotonic()


class CallRecords:
    """The :class:`~voicebot.transports.line.CallOwner` methods that keep the records: the call once
    the caller sent valid audio or a key (with the time it started: a garbage connection is no call);
    its trace events as they happen (to storage's buffer, written within :data:`FLUSH_INTERVAL_S`);
    the handoff record the moment the bot escalates, so that a caller who hangs up during the
    transfer prompt still leaves one; the end, with any events not written yet."""

    def __init__(self, storage: Storage, engines: Engines) -> None:
        self.storage = storage
        self.engines = engines  # the ones the call started with: a reload does not change its words
        self.call_id = ""
        self.language = engines.config.language
        # Events come from worker threads too. Until the connection is a call they are held here
        # (a connection that never becomes one leaves no trace); ``_received`` counts every event.
        self._events_lock = threading.Lock()
        self._held: list[CallEvent] | None = []
        self._received = 0

    def started(self, call_id: str, caller_id: str, language: str, at: float | None = None) -> None:
        self.call_id, self.language = call_id, language
        self.storage.call_started(call_id, caller_id, language, time.time() if at is None else at)
        with self._events_lock:
            held, self._held = self._held or [], None
            offset = wall_offset()
            for event in held:
                self.storage.buffer_trace_event(event, offset)

    def event(self, event: CallEvent) -> None:
        with self._events_lock:
            self._received += 1
            if self._held is not None:
                self._held.append(event)
            else:
                self.storage.buffer_trace_event(event, wall_offset())

    def handoff(self, record: HandoffRecord) -> None:
        """On the event loop (the dialogue's outputs are delivered there): the record, and the trace
        that led to it at once rather than at the next flush."""
        self.storage.save_handoff(record)
        if record.account_key is not None:
            self.storage.set_call_account(self.call_id, record.account_key)
        self.storage.flush_trace_events()
        self._language_now(record.language)

    def record_end(self, outcome: str, result: str, events: list[CallEvent]) -> None:
        """``events`` is the whole trace; the ones not streamed through :meth:`event` are written now,
        and the call's trace is in storage before its end is."""
        # The call counts for the language it ended in (the caller may have switched).
        switches = [event.language for event in events if isinstance(event, LanguageChanged)]
        if switches:
            self._language_now(switches[-1])
        with self._events_lock:
            unstreamed, self._received = events[self._received :], len(events)
        offset = wall_offset()
        for event in unstreamed:
            self.storage.buffer_trace_event(event, offset)
        self.storage.flush_trace_events()
        self.storage.call_ended(self.call_id, outcome, result, time.time())

    def _language_now(self, language: str) -> None:
        if language and language != self.language:
            self.language = language
            self.storage.set_call_language(self.call_id, language)


class RecordKeeper:
    """Crash safety for the server's storage. At start-up it closes what a run that was killed left
    open, at the time that run was last known alive: its calls as ``interrupted`` (reason
    :data:`CUT_CALL_REASON`, with their handoffs, callbacks and dispositions kept) and its waiting
    queue entries as ``dropped``, so the downtime counts neither as a call nor as a wait. While the
    server runs, every ``interval_s`` it writes the live calls' buffered trace events, then the alive
    mark, from the event loop (the one thread that uses the storage connection)."""

    def __init__(
        self, storage: Storage, interval_s: float = FLUSH_INTERVAL_S, retention_s: float | None = None
    ) -> None:
        self.storage = storage
        self.interval_s = interval_s
        self.retention_s = retention_s  # calls older than this are deleted (None: kept)
        self._task: asyncio.Task[None] | None = None
        self._retention_done_at = 0.0

    def start(self) -> None:
        """Before the first call: recovery, then the flushes."""
        alive_at = self.storage.last_alive()
        cut = self.storage.close_cut_calls(alive_at, CUT_CALL_REASON)
        # No alive mark: a database last used by a version without one; its entries close now.
        dropped = self.storage.close_waiting_entries(time.time() if alive_at is None else alive_at)
        if cut or dropped:
            log.warning(
                "the previous run stopped without closing its records (last alive %s): %d calls closed"
                " as interrupted, %d waiting queue entries as dropped",
                "unknown" if alive_at is None else time.ctime(alive_at), cut, dropped,
            )  # fmt: skip
        self.storage.mark_alive(time.time())
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        """After the calls' bookkeeping, before storage closes: the last events (a stage that emitted
        after its call's end) and the last alive mark."""
        if self._task is not None:
            self._task.cancel()
        self.flush()

    def flush(self) -> None:
        self.storage.flush_trace_events()
        now = time.time()
        self.storage.mark_alive(now)
        if self.retention_s is not None and now - self._retention_done_at >= RETENTION_INTERVAL_S:
            self._retention_done_at = now
            deleted = self.storage.delete_calls_ended_before(now - self.retention_s)
            if deleted:
                log.info(
                    "deleted %d calls that ended more than %.0f days ago", deleted, self.retention_s / 86400
                )

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:  # a locked or full database: the events stay buffered for the next try
                log.exception("writing the live calls' trace events failed")

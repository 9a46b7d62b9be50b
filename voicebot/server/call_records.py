"""A live call's rows in storage, the same whoever serves the caller after an escalation."""

from __future__ import annotations

import time

from voicebot.engines import Engines
from voicebot.events import CallEvent, LanguageChanged
from voicebot.handoff.record import HandoffRecord
from voicebot.storage import Storage


class CallRecords:
    """The :class:`~voicebot.transports.line.CallOwner` methods that keep the records: the call once
    the caller sent valid audio or a key (with the time it started: a garbage connection is no call);
    the handoff record the moment the bot escalates, so that a caller who hangs up during
    the transfer prompt still leaves one; the end and the trace."""

    def __init__(self, storage: Storage, engines: Engines) -> None:
        self.storage = storage
        self.engines = engines  # the ones the call started with: a reload does not change its words
        self.call_id = ""
        self.language = engines.config.language

    def started(self, call_id: str, caller_id: str, language: str, at: float | None = None) -> None:
        self.call_id, self.language = call_id, language
        self.storage.call_started(call_id, caller_id, language, time.time() if at is None else at)

    def handoff(self, record: HandoffRecord) -> None:
        self.storage.save_handoff(record)
        self._language_now(record.language)

    def record_end(self, outcome: str, result: str, events: list[CallEvent]) -> None:
        # The call counts for the language it ended in (the caller may have switched).
        switches = [event.language for event in events if isinstance(event, LanguageChanged)]
        if switches:
            self._language_now(switches[-1])
        self.storage.call_ended(self.call_id, outcome, result, time.time())
        self.storage.add_trace_events(events, time.time() - time.monotonic())

    def _language_now(self, language: str) -> None:
        if language and language != self.language:
            self.language = language
            self.storage.set_call_language(self.call_id, language)

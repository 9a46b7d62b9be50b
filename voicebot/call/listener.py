"""Listening: the endpointer and the recogniser stream turn caller audio into caller turns.

:meth:`Listener.feed` takes one 20 ms frame and never waits: recognition of a finished utterance,
and the speculative recognition that starts during the caller's trailing silence, run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.asr.base import RecognitionHints, Recognizer, RecognizerStream, Transcript
from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.vad import Endpointer
from voicebot.call.threads import RECOGNITION, run_in
from voicebot.config import EndpointConfig
from voicebot.events import AsrPartial, CallEvent, SpeechEnded, SpeechStarted

log = logging.getLogger("voicebot.call")


@dataclass(frozen=True)
class Heard:
    """A recognised caller utterance."""

    transcript: Transcript
    asr_ms: float
    speculative: bool  # recognised during the trailing silence, before the endpoint fired


@dataclass(frozen=True)
class CallerUtterance:
    """An utterance the endpointer closed; its recognition may still be running."""

    recognition: asyncio.Task[Heard]
    speech_ms: int
    audio_ms: int  # how much audio the recogniser heard


@dataclass
class _Open:
    stream: RecognizerStream | None  # None: speech we ignore (during a prompt that cannot be interrupted)
    during_prompt: bool
    audio_ms: int = 0
    speculation: asyncio.Task[Heard | None] | None = None
    speculated_voiced_ms: int = -1  # the voiced ms the speculation covered


class Listener:
    def __init__(
        self,
        config: EndpointConfig,
        recognizer: Recognizer,
        emit: Callable[[CallEvent], None],
        on_guess: Callable[[str], None],
    ) -> None:
        self._config = config
        self._recognizer = recognizer
        self._emit = emit
        self._on_guess = on_guess  # a speculative transcript: understanding may start on it
        self._endpointer = Endpointer(config)
        self._open: _Open | None = None

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    @property
    def voiced_ms(self) -> int:
        return self._endpointer.voiced_ms

    @property
    def hears_barge_in(self) -> bool:
        """The caller has talked long enough over the bot to interrupt it (not a cough)."""
        open_ = self._open
        return (
            open_ is not None
            and open_.stream is not None
            and self._endpointer.voiced_ms >= self._config.barge_in_min_speech_ms
        )

    def pending(self) -> list[asyncio.Task[Heard | None]]:
        speculation = self._open.speculation if self._open else None
        return [speculation] if speculation is not None and not speculation.done() else []

    def feed(
        self,
        frame: bytes,
        *,
        bot_speaking: bool,
        interruptible: bool,
        hints: Callable[[], RecognitionHints],
        secret: bool,
    ) -> CallerUtterance | None:
        """One caller frame; returns the utterance it closed, if any. ``hints`` is asked when an
        utterance starts (what the dialogue expects next, for grammars and biasing).

        Raises what opening a recogniser stream raised (the caller's turn is then lost)."""
        event = self._endpointer.feed(frame)
        if event is not None and event.kind == "start":
            stream = self._recognizer.open_stream(hints()) if interruptible else None
            self._open = _Open(stream, during_prompt=bot_speaking)
            self._emit(SpeechStarted(during_prompt=bot_speaking))
            self._accept(event.audio, secret)
            return None
        if event is not None:
            open_, self._open = self._open, None
            self._emit(SpeechEnded(speech_ms=event.speech_ms, reason=event.reason))
            if open_ is None or open_.stream is None or (open_.during_prompt and bot_speaking):
                return None  # ignored, or too short to be a barge-in: a cough or "uh-huh" over a prompt
            task = asyncio.create_task(self._recognise(open_, event.speech_ms))
            return CallerUtterance(task, event.speech_ms, open_.audio_ms)
        if self._open is not None:
            self._accept(frame, secret)
            self._maybe_speculate(self._open)
        return None

    def barged_in(self) -> None:
        """The caller's speech interrupted the bot: it is a turn of its own now."""
        if self._open is not None:
            self._open.during_prompt = False

    def drop(self) -> None:
        """Forgets the utterance in progress (the caller hung up)."""
        if self._open is not None and self._open.speculation is not None:
            self._open.speculation.cancel()
        self._open = None

    def _accept(self, pcm: bytes, secret: bool) -> None:
        open_ = self._open
        if open_ is None or open_.stream is None:
            return
        open_.audio_ms += len(pcm) // (FRAME_BYTES // FRAME_MS)
        partial = open_.stream.accept(pcm)
        if partial and not secret:
            self._emit(AsrPartial(text=partial))

    def _maybe_speculate(self, open_: _Open) -> None:
        """Starts recognition once the caller has been quiet a little while, so that by the time the
        endpointer is sure the turn is over, the transcript and intent are (nearly) ready."""
        wait_ms = self._config.speculate_after_ms
        if open_.stream is None or not wait_ms or self._endpointer.trailing_silence_ms < wait_ms:
            return
        voiced_ms = self._endpointer.voiced_ms
        if open_.speculated_voiced_ms == voiced_ms:
            return  # already recognising exactly this speech
        if open_.speculation is not None and not open_.speculation.done():
            return  # a stale guess still runs: queueing another would only compete for the CPU
        open_.speculated_voiced_ms = voiced_ms
        open_.speculation = asyncio.create_task(self._speculate(open_.stream))

    async def _speculate(self, stream: RecognizerStream) -> Heard | None:
        try:
            heard = await _transcribe(stream.peek, speculative=True)
        except Exception:
            log.warning("speculative recognition failed; recognising at the endpoint", exc_info=True)
            return None
        if heard is not None and heard.transcript.text.strip():
            self._on_guess(heard.transcript.text)
        return heard

    async def _recognise(self, open_: _Open, speech_ms: int) -> Heard:
        assert open_.stream is not None
        if open_.speculation is not None and open_.speculated_voiced_ms == speech_ms:
            heard = await open_.speculation
            if heard is not None:
                return heard
        heard = await _transcribe(open_.stream.finish)
        assert heard is not None  # finish() always returns a transcript
        return heard


async def _transcribe(recognise: Callable[[], Transcript | None], speculative: bool = False) -> Heard | None:
    started = time.monotonic()
    transcript = await run_in(RECOGNITION, recognise)
    if transcript is None:
        return None
    return Heard(transcript, (time.monotonic() - started) * 1000, speculative)

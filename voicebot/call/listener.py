"""Listening: the endpointer, the end-of-turn decision and the recogniser stream turn caller audio
into caller turns.

:meth:`Listener.feed` takes one 20 ms frame and never waits: recognition of a finished utterance,
the speculative recognition that starts during the caller's trailing silence, and the end-of-turn
model's verdict on that pause, run in threads; each later frame looks at what has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from voicebot.asr.base import RecognitionHints, Recognizer, RecognizerStream, Transcript
from voicebot.audio import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from voicebot.audio.vad import Endpointer
from voicebot.call.threads import RECOGNITION, TURN, run_in
from voicebot.config import EndpointConfig
from voicebot.dialogue.policy import FALLBACK, OUT_OF_SCOPE
from voicebot.events import AsrPartial, CallEvent, SpeechEnded, SpeechStarted
from voicebot.nlu.base import NluResult
from voicebot.nlu.numbers import spoken_digits
from voicebot.turn.detector import CompletionModel, Pause, silence_needed_ms, turn_is_over

log = logging.getLogger("voicebot.call")
T = TypeVar("T")
# The end-of-turn model reads the last 8 s of the turn.
MODEL_AUDIO_BYTES = 8 * SAMPLE_RATE * 2


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
    digits_expected: int | None  # the dialogue expects a digit string (see RecognitionHints.digits)
    audio: bytearray  # the utterance so far, for the end-of-turn model
    audio_ms: int = 0
    speculation: asyncio.Task[Heard | None] | None = None
    speculated_voiced_ms: int = -1  # the voiced ms the speculation covered
    turn_check: asyncio.Task[float | None] | None = None
    turn_checked_voiced_ms: int = -1  # the voiced ms the end-of-turn check covered
    guess: asyncio.Task[tuple[NluResult, float]] | None = None  # NLU of the speculation's text


class Listener:
    def __init__(
        self,
        config: EndpointConfig,
        recognizer: Recognizer,
        emit: Callable[[CallEvent], None],
        on_guess: Callable[[Transcript], asyncio.Task[tuple[NluResult, float]] | None],
        turn_model: CompletionModel | None = None,
        language: str = "en",
    ) -> None:
        self._config = config
        self.language = language  # the call's: digits the caller says are counted in it
        self._recognizer = recognizer
        self._emit = emit
        # A speculative transcript: understanding may start on it; its NLU result, when given,
        # helps decide whether the turn is over.
        self._on_guess = on_guess
        self._turn_model = turn_model if config.end_of_turn == "smart_turn" else None
        # The endpointer finds speech and, as a last resort, ends it after the longest pause the
        # end-of-turn decision allows; the decision usually ends the turn much earlier.
        longest_pause = max(silence_needed_ms(config, self._turn_model, d) for d in (None, 0))
        self._endpointer = Endpointer(config.replace(end_silence_ms=longest_pause))
        self._open: _Open | None = None

    @property
    def in_speech(self) -> bool:
        return self._open is not None

    @property
    def voiced_ms(self) -> int:
        return self._endpointer.voiced_ms

    @property
    def heard_voice(self) -> bool:
        """The frame just fed was the caller's voice, in an utterance: their speech ends no earlier
        (the turn latency is timed from the last such frame of a turn)."""
        return self._open is not None and self._endpointer.trailing_silence_ms == 0

    @property
    def hears_barge_in(self) -> bool:
        """The caller has talked long enough over the bot to interrupt it (not a cough)."""
        open_ = self._open
        return (
            open_ is not None
            and open_.stream is not None
            and self._endpointer.voiced_ms >= self._config.barge_in_min_speech_ms
        )

    def use(self, recognizer: Recognizer, language: str) -> None:
        """Recognises the next utterances with ``recognizer``, in ``language`` (the call changed)."""
        self._recognizer, self.language = recognizer, language

    def pending(self) -> list[asyncio.Task[Any]]:
        open_ = self._open
        if open_ is None:
            return []
        tasks = (open_.speculation, open_.turn_check, open_.guess)
        return [task for task in tasks if task is not None and not task.done()]

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
        # The endpointer resets when it ends an utterance: its pause, this frame included, is read now.
        pause_ms = self._endpointer.trailing_silence_ms + FRAME_MS
        event = self._endpointer.feed(frame)
        if event is not None and event.kind == "start":
            expected = hints()
            stream = self._recognizer.open_stream(expected) if interruptible else None
            self._open = _Open(
                stream, during_prompt=bot_speaking, digits_expected=expected.digits, audio=bytearray()
            )
            self._emit(SpeechStarted(during_prompt=bot_speaking))
            self._accept(event.audio, secret)
            return None
        open_ = self._open
        if event is None and open_ is not None:
            self._accept(frame, secret)
            self._maybe_speculate(open_)
            self._maybe_check_turn(open_)
            pause_ms = self._endpointer.trailing_silence_ms
            reason = self._turn_over(open_, pause_ms)
            event = self._endpointer.end_now(reason) if reason else None
        if event is None:
            return None
        self._open = None
        complete = _result(open_.turn_check) if open_ is not None else None
        self._emit(
            SpeechEnded(
                speech_ms=event.speech_ms, reason=event.reason, pause_ms=pause_ms, turn_complete=complete
            )
        )
        if open_ is None or open_.stream is None or (open_.during_prompt and bot_speaking):
            return None  # ignored, or too short to be a barge-in: a cough or "uh-huh" over a prompt
        task = asyncio.create_task(self._recognise(open_, event.speech_ms))
        return CallerUtterance(task, event.speech_ms, open_.audio_ms)

    def barged_in(self) -> None:
        """The caller's speech interrupted the bot: it is a turn of its own now."""
        if self._open is not None:
            self._open.during_prompt = False

    def drop(self) -> None:
        """Forgets the utterance in progress (the caller hung up)."""
        for task in self.pending():
            task.cancel()
        self._open = None

    def _accept(self, pcm: bytes, secret: bool) -> None:
        open_ = self._open
        if open_ is None or open_.stream is None:
            return
        open_.audio_ms += len(pcm) // (FRAME_BYTES // FRAME_MS)
        if self._turn_model is not None:
            open_.audio.extend(pcm)
            if len(open_.audio) > 2 * MODEL_AUDIO_BYTES:  # trimmed now and then, not every frame
                del open_.audio[:-MODEL_AUDIO_BYTES]
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
        open_.speculation = asyncio.create_task(self._speculate(open_))

    def _maybe_check_turn(self, open_: _Open) -> None:
        """Asks the end-of-turn model once per pause, when the pause is turn_check_ms long."""
        model = self._turn_model
        if model is None or open_.stream is None:
            return
        if self._endpointer.trailing_silence_ms < self._config.turn_check_ms:
            return
        voiced_ms = self._endpointer.voiced_ms
        if open_.turn_checked_voiced_ms == voiced_ms:
            return
        if open_.turn_check is not None and not open_.turn_check.done():
            return  # the previous pause's verdict is still coming; this one is asked next frame
        open_.turn_checked_voiced_ms = voiced_ms
        audio = bytes(open_.audio[-MODEL_AUDIO_BYTES:])
        open_.turn_check = asyncio.create_task(run_in(TURN, lambda: _completion(model, audio)))

    def _turn_over(self, open_: _Open, pause_ms: int) -> str:
        """Why the caller's turn is over at this pause ("" while it is not)."""
        if not pause_ms:
            return ""
        if open_.stream is None:  # speech that is not listened to ends on silence alone
            ignored_needs = silence_needed_ms(self._config, self._turn_model, None)
            return "silence" if pause_ms >= ignored_needs else ""
        voiced_ms = self._endpointer.voiced_ms
        complete = _result(open_.turn_check) if open_.turn_checked_voiced_ms == voiced_ms else None
        heard = _result(open_.speculation) if open_.speculated_voiced_ms == voiced_ms else None
        digits_heard = understood = None
        if heard is not None:
            if open_.digits_expected is not None:
                digits_heard = len(spoken_digits(heard.transcript.text, language=self.language))
            guess = _result(open_.guess)
            # A fragment ("so the thing is") is often confidently out of scope: not a request.
            if guess is not None and guess[0].intent.name not in (OUT_OF_SCOPE, FALLBACK):
                understood = guess[0].intent.confidence
        pause = Pause(pause_ms, complete, open_.digits_expected, digits_heard, understood)
        if not turn_is_over(self._config, self._turn_model, pause):
            return ""
        if pause_ms >= silence_needed_ms(self._config, self._turn_model, open_.digits_expected):
            return "silence"
        return "digits" if digits_heard else "end_of_turn"

    async def _speculate(self, open_: _Open) -> Heard | None:
        assert open_.stream is not None
        try:
            heard = await _transcribe(open_.stream.peek, speculative=True)
        except Exception:
            log.warning("speculative recognition failed; recognising at the endpoint", exc_info=True)
            return None
        open_.guess = None
        if heard is not None and heard.transcript.text.strip():
            open_.guess = self._on_guess(heard.transcript)
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


def _completion(model: CompletionModel, audio: bytes) -> float | None:
    try:
        return model.complete(audio)
    except Exception:  # the turn still ends, on silence
        log.warning("end-of-turn model failed; this pause is judged on silence", exc_info=True)
        return None


def _result(task: asyncio.Task[T] | None) -> T | None:
    """A finished task's result; None while it runs, or when it failed or was cancelled."""
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


async def _transcribe(recognise: Callable[[], Transcript | None], speculative: bool = False) -> Heard | None:
    started = time.monotonic()
    transcript = await run_in(RECOGNITION, recognise)
    if transcript is None:
        return None
    return Heard(transcript, (time.monotonic() - started) * 1000, speculative)

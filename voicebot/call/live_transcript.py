"""The live transcript of the agent leg: while a caller talks to a human agent, both sides keep being
recognised, line by line, for the agent desk, the supervisor and the call's record.

:meth:`LiveTranscript.feed` runs only the endpointer on a frame: an utterance's audio is buffered and,
once it ends, recognised (stream opened, fed and finished) in the recognition pool, so the event
loop's tick never waits on a model. Lines reach ``on_line`` on the loop in the order their
utterances ended, card numbers redacted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from voicebot.asr.base import Recognizer
from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.vad import Endpointer, EndpointEvent
from voicebot.call.threads import RECOGNITION, run_in
from voicebot.config import EndpointConfig
from voicebot.handoff.redact import CallerPrivacy
from voicebot.nlu.numbers import spoken_digits

log = logging.getLogger("voicebot.call")

# Measured with Whisper base here: clean Piper and espeak-ng sentences 0.76-0.93, one-word answers
# ("yes", "okay", "no") 0.49-0.75, sentences at 0 dB SNR 0.70; the texts Whisper made up for
# non-words 0.28-0.34 (reversed speech, "hmm" -> "m.", espeak-ng "yes" -> "df."). A 1 kHz or 440 Hz
# tone, DTMF, ringback, hum, white, pink and speech-shaped noise: no text at all (confidence 0.0,
# the engine's no-speech check).
MIN_CONFIDENCE = 0.4
# Less voiced audio is a cough, a click or a breath, for which Whisper invents words.
MIN_SPEECH_MS = 300
BYTES_PER_MS = FRAME_BYTES // FRAME_MS


@dataclass(frozen=True)
class LiveLine:
    """One finished utterance of the agent leg, as it may be shown and stored."""

    speaker: str  # "Caller", "Agent" or a desk username
    text: str
    at: float  # time.time() when the utterance ended
    audio_ms: int  # the utterance's audio the recogniser heard, pre-roll and trailing silence included


@dataclass
class _Speaker:
    endpointer: Endpointer
    audio: bytearray = field(default_factory=bytearray)  # the open utterance so far


class LiveTranscript:
    """Recognises the utterances of several named speakers, each segmented by its own endpointer.

    ``on_line`` is called on the event loop; ``language`` is the one numbers are read in to find
    card numbers. Results below ``min_confidence``, and utterances with less than ``min_speech_ms``
    voiced, are dropped.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        config: EndpointConfig,
        language: str,
        on_line: Callable[[LiveLine], None],
        *,
        min_confidence: float = MIN_CONFIDENCE,
        min_speech_ms: int = MIN_SPEECH_MS,
    ) -> None:
        self._recognizer = recognizer
        self._config = config
        self._privacy = CallerPrivacy(functools.partial(spoken_digits, language=language))
        self._on_line = on_line
        self._min_confidence = min_confidence
        self._min_speech_ms = min_speech_ms
        self._speakers: dict[str, _Speaker] = {}
        self._deliveries: set[asyncio.Task[None]] = set()  # referenced so none is collected while pending
        self._last_delivery: asyncio.Task[None] | None = None
        self._closed = False

    def feed(self, speaker: str, frame: bytes) -> None:
        """One 20 ms frame of ``speaker``'s audio, from the event loop; ignored after :meth:`close`."""
        if self._closed:
            return
        state = self._speakers.get(speaker)
        if state is None:
            state = self._speakers[speaker] = _Speaker(Endpointer(self._config))
        event = state.endpointer.feed(frame)
        if event is None:
            if state.endpointer.in_speech:
                state.audio.extend(frame)
        elif event.kind == "start":
            state.audio = bytearray(event.audio)
        else:
            self._utterance_ended(speaker, state, event)

    async def close(self) -> None:
        """Ends the utterances still open (recognised and delivered like the others) and waits until
        every line is delivered or dropped."""
        self._closed = True
        for speaker, state in self._speakers.items():
            if state.endpointer.in_speech:
                self._utterance_ended(speaker, state, state.endpointer.end_now("closed"))
        if self._deliveries:
            # Not gather: a delivery cancelled by a closing loop must not fail the close.
            await asyncio.wait(set(self._deliveries))

    def _utterance_ended(self, speaker: str, state: _Speaker, event: EndpointEvent) -> None:
        audio, state.audio = bytes(state.audio), bytearray()
        if event.speech_ms < self._min_speech_ms:
            return
        delivery = asyncio.create_task(self._deliver(speaker, audio, time.time(), self._last_delivery))
        self._last_delivery = delivery
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(
        self, speaker: str, audio: bytes, ended_at: float, previous: asyncio.Task[None] | None
    ) -> None:
        try:
            text = await run_in(RECOGNITION, functools.partial(self._shown_text, audio))
        except Exception:
            log.warning(
                "live transcript: recognising an utterance of %s failed; line dropped", speaker, exc_info=True
            )
            text = ""
        if previous is not None:
            # Lines in the order spoken; the earlier line's failure or cancellation is not this one's.
            await asyncio.wait({previous})
        if text:
            self._on_line(LiveLine(speaker, text, ended_at, len(audio) // BYTES_PER_MS))

    def _shown_text(self, audio: bytes) -> str:
        """In the recognition pool: the utterance's text as it may be shown, or "" to drop it."""
        stream = self._recognizer.open_stream()
        stream.accept(audio)
        transcript = stream.finish()
        if transcript.confidence < self._min_confidence:
            return ""
        return self._privacy.redacted(transcript.text.strip())

"""One call: audio frames in, bot audio out, on the call's audio clock.

A transport calls :meth:`CallSession.step` once per 20 ms frame (caller audio, optionally a DTMF
key) and gets the bot's next 20 ms frame back. Audio flows one way through the stages:

    endpointer (webrtcvad) -> recognizer stream -> NLU -> dialogue -> synthesizer -> playback

Heavy work (ASR final, NLU, TTS) runs in threads so concurrent calls share the CPU. ``step`` awaits
that work before returning, so an unpaced simulated call behaves exactly like a paced one: every
timer (endpointing, no-input) counts frames, never wall time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from voicebot.asr.base import RecognizerStream, Transcript
from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.audio.vad import Endpointer, EndpointEvent
from voicebot.dialogue.manager import DialogueManager, Handoff, Hangup, Output, Say
from voicebot.engines import Engines
from voicebot.events import (
    AsrFinal,
    AsrPartial,
    BargeIn,
    BotSaid,
    CallEnded,
    CallEvent,
    CallStarted,
    DtmfReceived,
    NluParsed,
    SpeechEnded,
    SpeechStarted,
    StageError,
    TtsFinished,
    TtsFirstAudio,
    TtsStarted,
)
from voicebot.handoff.record import HandoffRecord
from voicebot.nlu.base import NluResult

log = logging.getLogger("voicebot.call")
SILENCE = bytes(FRAME_BYTES)


@dataclass(frozen=True)
class Fault:
    """Makes one stage fail on one caller turn (for testing that the caller is told and escalated)."""

    stage: str  # asr | nlu | tts | dialogue
    turn: int = 1


class InjectedFault(RuntimeError):
    pass


@dataclass
class _Understanding:
    transcript: Transcript
    asr_ms: float
    speculative: bool = False
    nlu: NluResult | None = None  # None: not parsed yet
    nlu_ms: float = 0.0


@dataclass
class _Utterance:
    stream: RecognizerStream | None  # None: speech we ignore (during a prompt that cannot be interrupted)
    started_during_prompt: bool
    audio_ms: int = 0
    # Recognition started during the trailing silence, and the voiced ms it covered.
    speculation: asyncio.Task[_Understanding | None] | None = None
    speculated_voiced_ms: int = -1


@dataclass
class _Speech:
    """One Say being played: frames arrive sentence by sentence from the synthesizer."""

    say: Say
    chunks: Iterator[bytes]
    frames: deque[bytes] = field(default_factory=deque)
    next_chunk: asyncio.Task[bytes | None] | None = None
    played_frames: int = 0
    total_frames: int = 0
    started: bool = False
    synth_ms: float = 0.0  # time to the first sentence's audio


class CallSession:
    def __init__(
        self,
        engines: Engines,
        *,
        caller_id: str = "unknown",
        language: str | None = None,
        call_id: str | None = None,
        listeners: list[Callable[[CallEvent], None]] | None = None,
        faults: tuple[Fault, ...] = (),
        on_handoff: Callable[[HandoffRecord], None] | None = None,
    ) -> None:
        self.engines = engines
        self.config = engines.config
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.caller_id = caller_id
        self.language = language or self.config.language
        self.listeners = list(listeners or [])
        self.faults = faults
        self._on_handoff = on_handoff
        self.events: list[CallEvent] = []
        self.audio_ms = 0
        self.outcome: str | None = None
        self.endpointer = Endpointer(self.config.endpoint)
        self.dialogue = DialogueManager(
            engines.flow,
            self.language,
            engines.actions,
            self.config.policy,
            call_id=self.call_id,
            caller_id=caller_id,
            emit=self.emit,
        )
        self._utterance: _Utterance | None = None
        self._playlist: deque[_Speech | Hangup] = deque()
        self._idle_ms = 0
        # Wall time the caller's turn ended and how long the endpointer waited for it (latency).
        self._turn_end: tuple[float, int] | None = None
        self._awaiting_first_audio = False
        self._caller_turns = 0

    # ----- events ------------------------------------------------------------------------------

    def emit(self, event: CallEvent) -> None:
        event.call_id = self.call_id
        event.audio_ms = self.audio_ms
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    # ----- public API for transports -------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def handoff(self) -> HandoffRecord | None:
        """The handoff record once the dialogue has escalated the call."""
        return self.dialogue.handoff

    @property
    def collecting_secret(self) -> bool:
        return self.dialogue.collecting_secret

    @property
    def in_speech(self) -> bool:
        return self.endpointer.in_speech

    @property
    def bot_speaking(self) -> bool:
        return any(isinstance(item, _Speech) for item in self._playlist)

    async def start(self) -> None:
        self.emit(
            CallStarted(
                caller_id=self.caller_id,
                language=self.language,
                asr_engine=self.engines.recognizer.name,
                nlu_engine=self.engines.nlu.name,
            )
        )
        await self._handle(lambda: self.dialogue.start(), stage="dialogue")

    async def step(self, caller_frame: bytes = SILENCE, dtmf: str | None = None) -> bytes:
        """Advances the call by one frame: takes the caller's audio (and key), returns the bot's."""
        if self.ended:
            return SILENCE
        if len(caller_frame) != FRAME_BYTES:
            raise ValueError(
                f"caller frame must be {FRAME_BYTES} bytes (20 ms of 16 kHz s16le), got {len(caller_frame)}"
            )
        self.audio_ms += FRAME_MS
        if dtmf:
            await self._on_dtmf(dtmf)
        event = self.endpointer.feed(caller_frame)
        if event is not None:
            await self._on_endpoint(event)
        elif self._utterance is not None:
            self._feed_utterance(caller_frame)
            self._maybe_speculate(self._utterance)
        self._check_barge_in()
        out = await self._next_bot_frame()
        await self._tick_no_input()
        return out

    async def hangup(self, reason: str = "caller_hangup") -> None:
        """The caller hung up."""
        if self.ended:
            return
        self._utterance = None
        self._stop_playback(interrupted=True)
        self._finish(self.dialogue.on_hangup().outcome, reason)

    # ----- caller side -------------------------------------------------------------------------

    async def _on_dtmf(self, key: str) -> None:
        masked = "*" if self.dialogue.collecting_secret else key
        self.emit(DtmfReceived(digits=masked))
        if not self.dialogue.accepts_key(key):
            return
        self._idle_ms = 0
        if self.bot_speaking:
            current = self._current_speech()
            if current is not None and not current.say.interruptible:
                return
            self._barge_in("dtmf")
        self._caller_turns += 1
        self._turn_end = (time.monotonic(), 0)
        await self._handle(lambda: self.dialogue.on_dtmf(key), stage="dialogue")

    async def _on_endpoint(self, event: EndpointEvent) -> None:
        if event.kind == "start":
            self._idle_ms = 0
            during_prompt = self.bot_speaking
            current = self._current_speech()
            stream: RecognizerStream | None = None
            if current is None or current.say.interruptible:
                try:
                    stream = self.engines.recognizer.open_stream(self.dialogue.hints())
                except Exception as exc:  # any engine fault: tell the caller, escalate
                    await self._stage_failed("asr", exc)
                    return
            self._utterance = _Utterance(stream, during_prompt)
            self.emit(SpeechStarted(during_prompt=during_prompt))
            self._feed_utterance(event.audio)
            return
        utterance, self._utterance = self._utterance, None
        self.emit(SpeechEnded(speech_ms=event.speech_ms, reason=event.reason))
        if utterance is None or utterance.stream is None:
            return
        if utterance.started_during_prompt and self.bot_speaking:
            return  # too short to be a barge-in: a cough or "uh-huh" over the prompt
        self._caller_turns += 1
        self._turn_end = (time.monotonic(), self.config.endpoint.end_silence_ms)
        await self._understand(utterance, event)

    def _feed_utterance(self, pcm: bytes) -> None:
        utterance = self._utterance
        if utterance is None or utterance.stream is None:
            return
        utterance.audio_ms += len(pcm) // (FRAME_BYTES // FRAME_MS)
        partial = utterance.stream.accept(pcm)
        if partial and not self.dialogue.collecting_secret:
            self.emit(AsrPartial(text=partial))

    def _check_barge_in(self) -> None:
        utterance = self._utterance
        if utterance is None or utterance.stream is None or not self.bot_speaking:
            return
        if self.endpointer.voiced_ms >= self.config.endpoint.barge_in_min_speech_ms:
            self._barge_in("speech")
            utterance.started_during_prompt = False

    def _barge_in(self, by: str) -> None:
        current = self._current_speech()
        if current is not None:
            self.emit(
                BargeIn(
                    by=by,
                    heard_ms=current.played_frames * FRAME_MS,
                    prompt_ms=current.total_frames * FRAME_MS,
                )
            )
        self._stop_playback(interrupted=True, keep_uninterruptible=True)

    def _maybe_speculate(self, utterance: _Utterance) -> None:
        """Starts recognition once the caller has been quiet a little while, so that by the time the
        endpointer is sure the turn is over, the transcript and intent are (nearly) ready."""
        wait_ms = self.config.endpoint.speculate_after_ms
        if utterance.stream is None or not wait_ms or self.endpointer.trailing_silence_ms < wait_ms:
            return
        voiced_ms = self.endpointer.voiced_ms
        if utterance.speculated_voiced_ms == voiced_ms:
            return  # already recognising exactly this speech
        if utterance.speculation is not None and not utterance.speculation.done():
            return  # a stale guess still runs: queueing another would only compete for the CPU
        utterance.speculated_voiced_ms = voiced_ms
        utterance.speculation = asyncio.create_task(self._speculate(utterance.stream))

    async def _speculate(self, stream: RecognizerStream) -> _Understanding | None:
        try:
            understanding = await self._transcribe(stream.peek, speculative=True)
            if understanding is not None and understanding.transcript.text.strip():
                started = time.monotonic()
                understanding.nlu = await self.engines.nlu.parse(understanding.transcript.text)
                understanding.nlu_ms = (time.monotonic() - started) * 1000
            return understanding
        except Exception:
            log.warning("call %s: speculative recognition failed; recognising at the endpoint", self.call_id)
            return None

    async def _transcribe(
        self, recognise: Callable[[], Transcript | None], speculative: bool = False
    ) -> _Understanding | None:
        started = time.monotonic()
        transcript = await asyncio.to_thread(recognise)
        if transcript is None:
            return None
        return _Understanding(transcript, (time.monotonic() - started) * 1000, speculative)

    async def _understand(self, utterance: _Utterance, event: EndpointEvent) -> None:
        assert utterance.stream is not None
        stream = utterance.stream
        try:
            self._maybe_fault("asr")
            understanding = None
            if utterance.speculation is not None and utterance.speculated_voiced_ms == event.speech_ms:
                understanding = await utterance.speculation
            if understanding is None:
                understanding = await self._transcribe(stream.finish)
            assert understanding is not None
        except Exception as exc:
            await self._stage_failed("asr", exc)
            return
        transcript = understanding.transcript
        secret = self.dialogue.collecting_secret
        self.emit(
            AsrFinal(
                text="[withheld]" if secret else transcript.text,
                confidence=round(transcript.confidence, 3),
                words=[] if secret else [w.__dict__ for w in transcript.words],
                alternatives=[] if secret else list(transcript.alternatives),
                engine=self.engines.recognizer.name,
                compute_ms=round(understanding.asr_ms, 1),
                audio_duration_ms=utterance.audio_ms,
                speculative=understanding.speculative,
            )
        )
        if not transcript.text.strip() and event.speech_ms < 600:
            return  # a noise the VAD took for speech; nothing was said
        try:
            self._maybe_fault("nlu")
            if understanding.nlu is None:
                started = time.monotonic()
                understanding.nlu = await self.engines.nlu.parse(transcript.text)
                understanding.nlu_ms = (time.monotonic() - started) * 1000
        except Exception as exc:
            await self._stage_failed("nlu", exc)
            return
        result = understanding.nlu
        self.emit(
            NluParsed(
                text="[withheld]" if secret else result.text,
                intent=result.intent.name,
                confidence=round(result.intent.confidence, 3),
                ranking=[{"name": r.name, "confidence": round(r.confidence, 3)} for r in result.ranking[:5]],
                entities=[] if secret else [{"entity": e.entity, "value": e.value} for e in result.entities],
                compute_ms=round(understanding.nlu_ms, 2),
            )
        )
        await self._handle(
            lambda: self.dialogue.on_utterance(transcript.text, result, transcript.alternatives),
            stage="dialogue",
        )

    # ----- dialogue outputs and playback -----------------------------------------------------------

    async def _handle(self, produce: Callable[[], list[Output]], stage: str) -> None:
        try:
            self._maybe_fault(stage)
            outputs = produce()
        except Exception as exc:
            await self._stage_failed(stage, exc)
            return
        await self._enqueue(outputs)

    async def _stage_failed(self, stage: str, exc: BaseException) -> None:
        log.exception("call %s: %s failed", self.call_id, stage, exc_info=exc)
        self.emit(StageError(stage=stage, error=repr(exc)))
        self._stop_playback(interrupted=True)
        if self.dialogue.ended is not None:
            # Already leaving (e.g. the transfer prompt failed): end without more speech.
            self._playlist.append(Hangup(self.dialogue.ended.outcome))
            return
        await self._enqueue(self.dialogue.on_error(stage, exc))

    async def _enqueue(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Handoff):
                # The owner (contact centre or CLI) stores it now, so a caller who hangs up during
                # the transfer prompt still leaves a record.
                if self._on_handoff is not None:
                    self._on_handoff(output.record)
                continue
            if not isinstance(output, Say):
                self._playlist.append(output)
                continue
            try:
                speech = await self._synthesize(output)
            except Exception as exc:
                await self._stage_failed("tts", exc)
                return
            self._playlist.append(speech)
        self._awaiting_first_audio = bool(outputs) and self._turn_end is not None

    async def _synthesize(self, say: Say) -> _Speech:
        """Starts a Say: static prompts come from the cache (pre-synthesised at startup, so fault
        prompts play even when the synthesizer is broken); others stream sentence by sentence."""
        self.emit(TtsStarted(text=say.text, cached=say.static))
        started = time.monotonic()
        if say.static:
            chunks: Iterator[bytes] = iter([self.engines.prompt_cache.get(say.text)])
        else:
            self._maybe_fault("tts")
            chunks = iter(self.engines.synthesizer.synthesize(say.text))
        speech = _Speech(say, chunks)
        await self._fetch_chunk(speech)
        speech.synth_ms = (time.monotonic() - started) * 1000
        return speech

    async def _fetch_chunk(self, speech: _Speech) -> None:
        """Appends the next sentence's frames and starts synthesising the one after it."""
        task = speech.next_chunk
        chunk = await task if task is not None else await asyncio.to_thread(next, speech.chunks, None)
        speech.next_chunk = None
        if chunk is None:
            return
        frames = split_frames(chunk)
        speech.frames.extend(frames)
        speech.total_frames += len(frames)
        speech.next_chunk = asyncio.create_task(asyncio.to_thread(next, speech.chunks, None))

    def _current_speech(self) -> _Speech | None:
        head = self._playlist[0] if self._playlist else None
        return head if isinstance(head, _Speech) else None

    async def _next_bot_frame(self) -> bytes:
        while self._playlist:
            head = self._playlist[0]
            if isinstance(head, Hangup):
                self._playlist.clear()
                self._finish(head.outcome, "bot_hangup")
                return SILENCE
            if not head.frames and head.next_chunk is not None:
                try:
                    await self._fetch_chunk(head)
                except Exception as exc:
                    await self._stage_failed("tts", exc)
                    continue
            if not head.frames:
                self._playlist.popleft()
                self.emit(
                    TtsFinished(
                        played_ms=head.played_frames * FRAME_MS, total_ms=head.total_frames * FRAME_MS
                    )
                )
                continue
            if not head.started:
                head.started = True
                self.emit(
                    BotSaid(
                        text=head.say.text, prompt_id=head.say.prompt_id, interruptible=head.say.interruptible
                    )
                )
                if self._awaiting_first_audio and self._turn_end is not None:
                    ended_wall, endpoint_wait_ms = self._turn_end
                    wall_ms = (time.monotonic() - ended_wall) * 1000
                    self.emit(
                        TtsFirstAudio(
                            synth_ms=round(head.synth_ms, 1),
                            turn_latency_ms=round(endpoint_wait_ms + wall_ms, 1),
                        )
                    )
                    self._awaiting_first_audio = False
                    self._turn_end = None
            head.played_frames += 1
            self._idle_ms = 0
            return head.frames.popleft()
        return SILENCE

    def _stop_playback(self, interrupted: bool, keep_uninterruptible: bool = False) -> None:
        """Drops queued speech (markers stay); a barge-in keeps prompts marked not interruptible."""
        kept: deque[_Speech | Hangup] = deque()
        for item in self._playlist:
            if isinstance(item, _Speech) and keep_uninterruptible and not item.say.interruptible:
                kept.append(item)
            elif isinstance(item, _Speech):
                if item.next_chunk is not None:
                    item.next_chunk.cancel()
                if item.started:
                    self.emit(
                        TtsFinished(
                            played_ms=item.played_frames * FRAME_MS,
                            total_ms=item.total_frames * FRAME_MS,
                            interrupted=interrupted,
                        )
                    )
            else:
                kept.append(item)
        self._playlist = kept

    async def _tick_no_input(self) -> None:
        """Counts the caller's silence after the bot stopped talking, on the audio clock."""
        if self.ended or self._playlist or self._utterance is not None or self.dialogue.ended is not None:
            return
        self._idle_ms += FRAME_MS
        if self._idle_ms >= self.config.endpoint.no_input_timeout_ms:
            self._idle_ms = 0
            self._turn_end = None
            await self._handle(self.dialogue.on_no_input, stage="dialogue")

    def _finish(self, outcome: str, reason: str) -> None:
        if self.ended:
            return
        self.outcome = outcome
        self.emit(CallEnded(outcome=outcome, reason=reason, duration_ms=self.audio_ms))

    def _maybe_fault(self, stage: str) -> None:
        for fault in self.faults:
            if fault.stage == stage and fault.turn == self._caller_turns:
                raise InjectedFault(f"injected {stage} fault on turn {fault.turn}")

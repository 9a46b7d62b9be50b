"""One call: audio frames in, bot audio out, on the call's audio clock.

A transport calls :meth:`CallSession.step` once per 20 ms frame (caller audio, optionally a DTMF
key) and gets the bot's next 20 ms frame back. Audio flows one way through three stages:

    Listener (endpointer, recogniser stream, speculation) -> caller utterances
    Understanding (NLU, dialogue)                         -> what to say and do
    Playout (utterances synthesised sentence by sentence) -> bot frames

``step`` never waits on a model: recognition, NLU, the dialogue and synthesis run as tasks and
threads, and the bot is silent until they are done. :meth:`settle` waits for that work, so an
unpaced simulated call, which settles after each frame, behaves as if it were instant: every timer
(endpointing, no-input) counts frames of the audio clock, never wall time.

A live line also says when each caller frame arrived (``step(..., arrived=)``): the turn latency
is then timed from the arrival of the caller's last speech frame to the step whose frame starts the
answer, which the line sends at once (see :class:`CallClock`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator

from voicebot.asr.base import Transcript
from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.call.faults import Fault, check_faults
from voicebot.call.listener import Listener
from voicebot.call.playout import SILENCE, Playout, SpeechFailed, Utterance
from voicebot.call.understanding import Understanding
from voicebot.dialogue.manager import DialogueManager, Handoff, Hangup, Output, Say
from voicebot.dialogue.outputs import SwitchLanguage
from voicebot.engines import Engines, LanguageEngines
from voicebot.events import BargeIn, CallEnded, CallEvent, CallStarted, TtsFirstAudio, TtsStarted
from voicebot.handoff.record import HandoffRecord
from voicebot.handoff.redact import redact_event
from voicebot.nlu.base import NluResult
from voicebot.tts.clauses import first_clause, opening_clause

log = logging.getLogger("voicebot.call")

# The listener hands an utterance over in the frame its speech ends: a prompt paused by speech that
# was still nothing to recognise this long after (it was dropped or ignored) plays on.
NOTHING_HEARD_RESUME_MS = 200
FRAME_S = FRAME_MS / 1000


class CallClock:
    """When the caller's frames came and when the bot's go out, for the turn latency.

    On a live line (and in any call paced in real time) the transport says when each caller frame
    arrived, and the bot's frame of a step goes out as the step returns: both are wall (monotonic)
    time, so the time a caller frame waited at the server counts. An unpaced simulated call's
    frames have no arrival: its clock is the audio clock, stretched by the wall time the call's work
    held a step up beyond the frame's own 20 ms (it waits for its models between frames).
    """

    def __init__(self) -> None:
        self.caller_at = 0.0  # when the caller's frame of this step came
        self.now = 0.0  # when the bot's frame of this step goes out
        self._simulated = 0.0
        self._last_wall: float | None = None

    def tick(self, arrived: float | None) -> None:
        """One step; ``arrived``: when its caller frame reached a live line (None: unpaced)."""
        wall = time.monotonic()
        if arrived is not None:
            self.caller_at, self.now = arrived, wall
        else:
            held = 0.0 if self._last_wall is None else max(0.0, wall - self._last_wall - FRAME_S)
            self._simulated += FRAME_S + held
            self.caller_at = self.now = self._simulated
        self._last_wall = wall


class CallSession:
    def __init__(
        self,
        engines: Engines,
        *,
        caller_id: str = "unknown",
        language: str | None = None,
        home: str | None = None,
        call_id: str | None = None,
        listeners: list[Callable[[CallEvent], None]] | None = None,
        faults: tuple[Fault, ...] = (),
        on_handoff: Callable[[HandoffRecord], None] | None = None,
    ) -> None:
        self.engines = engines
        self.config = engines.config
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.caller_id = caller_id
        requested = language or self.config.language
        # A language that is not served now (not configured, or it failed to load): the default
        # language, with an apology first.
        self.language = requested if requested in engines.languages else self.config.language
        unavailable = requested if requested != self.language else None
        if unavailable is not None:
            log.warning("call %s asked for language %r, not served; using %s", self.call_id, requested[:16],
                        self.language)  # fmt: skip
        self.listeners = list(listeners or [])
        self.faults = faults
        self.events: list[CallEvent] = []
        self.audio_ms = 0
        self.outcome: str | None = None
        self._on_handoff = on_handoff
        self.models = engines.for_language(self.language)
        self.listener = Listener(
            self.config.endpoint,
            self.models.recognizer,
            self.emit,
            self._on_guess,
            self.models.turn_model,
            language=self.language,
        )
        self.playout = Playout(self.emit)
        self.understanding = Understanding(
            lambda emit: DialogueManager(
                engines.flow, self.language, engines.actions, self.config.policy,
                call_id=self.call_id, caller_id=caller_id, emit=emit, home=home,
                languages=tuple(engines.languages), unavailable_language=unavailable,
            ),
            lambda served: engines.for_language(served).nlu,
            asr_name=self.models.recognizer.name,
            faults=faults,
            emit=self.emit,
            deliver=self._deliver,
            interrupt=self.playout.stop,
            prompt_paused=lambda: self.playout.paused,
            barge_in_heard=self._barge_in_heard,
        )  # fmt: skip
        self.dialogue = self.understanding.dialogue
        self._idle_ms = 0
        self._clock = CallClock()
        self._voice_at = 0.0  # when the caller's latest speech frame came, on the call clock
        # The turn whose answer's first audio is awaited: on the call clock, when it ended (the
        # caller's last speech frame came, or the key was taken), and whether it was spoken.
        self._turn_end: tuple[float, bool] | None = None
        self._awaiting_first_audio = False
        self._caller_turns = 0
        # The caller has been quiet this long with the prompt paused and nothing to recognise.
        self._paused_unheard_ms = 0

    # ----- what transports and owners see ----------------------------------------------------------

    def emit(self, event: CallEvent) -> None:
        event.call_id = self.call_id
        event.audio_ms = self.audio_ms
        event.t = time.monotonic()  # emission time: events made in a worker thread keep the trace in order
        # What the trace stores and shows: what the dialogue is collecting is masked, cards redacted.
        redact_event(event, self.dialogue.privacy)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def handoff(self) -> HandoffRecord | None:
        """The handoff record once the dialogue has escalated the call."""
        return self.dialogue.handoff

    @property
    def in_speech(self) -> bool:
        return self.listener.in_speech

    @property
    def bot_speaking(self) -> bool:
        return self.playout.speaking

    async def start(self) -> None:
        self.emit(
            CallStarted(
                caller_id=self.caller_id,
                language=self.language,
                asr_engine=self.models.recognizer.name,
                nlu_engine=self.models.nlu.name,
            )
        )
        self.understanding.start()

    async def step(
        self, caller_frame: bytes = SILENCE, dtmf: str | None = None, *, arrived: float | None = None
    ) -> bytes:
        """Advances the call by one frame: takes the caller's audio (and key), returns the bot's.
        ``arrived``: when a live line received the caller's frame (``time.monotonic()``)."""
        return self._advance(caller_frame, dtmf, arrived, play=True)

    def catch_up(self, caller_frame: bytes, arrived: float) -> None:
        """A caller frame that waited at a live line which fell behind (a slow step, a busy event
        loop): heard now, with no bot frame for it. The caller has heard that gap already; the bot's
        audio goes on where it stopped at the next :meth:`step`."""
        self._advance(caller_frame, None, arrived, play=False)

    def _advance(self, caller_frame: bytes, dtmf: str | None, arrived: float | None, play: bool) -> bytes:
        if self.ended:
            return SILENCE
        if len(caller_frame) != FRAME_BYTES:
            raise ValueError(
                f"caller frame must be {FRAME_BYTES} bytes (20 ms of 16 kHz s16le), got {len(caller_frame)}"
            )
        self.audio_ms += FRAME_MS
        self._clock.tick(arrived)
        if dtmf:
            self._on_key(dtmf)
        self._listen(caller_frame)
        self._tick_paused_prompt()
        out = self._play() if play else SILENCE
        self._tick_no_input()
        return out

    async def settle(self, timeout: float | None = None) -> None:
        """Waits until recognition, understanding and synthesis in flight are done (or the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while tasks := [*self.listener.pending(), *self.understanding.pending(), *self.playout.pending()]:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            await asyncio.wait(tasks, timeout=remaining)

    async def hangup(self, reason: str = "caller_hangup") -> None:
        """The caller hung up."""
        if self.ended:
            return
        self.listener.drop()
        self.playout.stop()
        self._finish(self.dialogue.on_hangup().outcome, reason)

    # ----- caller side -------------------------------------------------------------------------

    def _on_key(self, key: str) -> None:
        current = self.playout.current
        accepted = self.dialogue.accepts_key(key) and (current is None or current.say.interruptible)
        if accepted:
            self._idle_ms = 0
            if self.playout.speaking or self.playout.paused:
                self._barge_in("dtmf")
            self._caller_turns += 1
            self._turn_end = (self._clock.now, False)
        self.understanding.key(key, self._caller_turns, accepted)

    def _listen(self, frame: bytes) -> None:
        current = self.playout.current
        try:
            utterance = self.listener.feed(
                frame,
                bot_speaking=self.playout.speaking,
                interruptible=current is None or current.say.interruptible,
                hints=self.dialogue.hints,
                secret=self.dialogue.collecting_secret,
            )
        except Exception as exc:  # the recogniser could not open a stream: tell the caller, escalate
            self.understanding.failed("asr", exc)
            return
        if self.listener.heard_voice:
            self._voice_at = self._clock.caller_at
        if self.listener.in_speech:
            self._idle_ms = 0
            if self.playout.speaking and self.listener.hears_barge_in:
                self._barge_in("speech")
                self.listener.barged_in()
        if utterance is not None:
            self._caller_turns += 1
            self._turn_end = (self._voice_at, True)
            self.understanding.utterance(utterance, self._caller_turns)

    def _on_guess(self, transcript: Transcript) -> asyncio.Task[tuple[NluResult, float]] | None:
        if self.dialogue.collecting_secret:
            return None
        return self.understanding.guess(transcript.text, transcript.text_language)

    def _barge_in(self, by: str) -> None:
        current = self.playout.current
        # Speech only pauses the prompt: it may prove to be a cough, an "uh-huh" or the bot's own
        # echo once recognised. A key is always meant.
        paused = by == "speech" and self.playout.pause(talked_over_ms=self.listener.voiced_ms)
        if current is not None:
            self.emit(BargeIn(by=by, heard_ms=current.heard_ms, prompt_ms=current.total_ms, paused=paused))
        if not paused:
            self.playout.stop(keep_uninterruptible=True)

    def _barge_in_heard(self, false_interruption: str | None) -> None:
        """The caller's words over the paused prompt are recognised: after a false interruption
        (the reason given) the prompt plays on, anything else interrupts it for real."""
        if not self.playout.paused:
            return
        if false_interruption is None:
            self.playout.stop(keep_uninterruptible=True)
        elif not self.listener.in_speech and not self.understanding.judging_barge_in:
            self._resume_prompt(false_interruption)
        # else the caller is talking again, or said more that is still being recognised: that decides

    def _tick_paused_prompt(self) -> None:
        """Plays a paused prompt on when the caller's speech came to nothing to recognise."""
        if not self.playout.paused or self.listener.in_speech or self.understanding.judging_barge_in:
            self._paused_unheard_ms = 0
            return
        self._paused_unheard_ms += FRAME_MS
        if self._paused_unheard_ms >= NOTHING_HEARD_RESUME_MS:
            self._resume_prompt("nothing_heard")

    def _resume_prompt(self, reason: str) -> None:
        self.playout.resume(reason)
        self._paused_unheard_ms = 0
        self._turn_end = None  # no turn was taken: there is no answer whose latency to measure

    def _tick_no_input(self) -> None:
        """Counts the caller's silence after the bot stopped talking, on the audio clock."""
        busy = self.playout.busy or self.listener.in_speech or self.understanding.busy
        if self.ended or busy or self.dialogue.ended is not None:
            return
        self._idle_ms += FRAME_MS
        if self._idle_ms >= self.config.endpoint.no_input_timeout_ms:
            self._idle_ms = 0
            self._turn_end = None
            self.understanding.no_input()

    # ----- bot side ----------------------------------------------------------------------------

    def _deliver(self, outputs: list[Output], turn: int) -> None:
        if self.ended:
            return
        for output in outputs:
            if isinstance(output, Handoff):
                # The owner (contact centre or CLI) stores it now, so a caller who hangs up during
                # the transfer prompt still leaves a record.
                if self._on_handoff is not None:
                    self._on_handoff(output.record)
            elif isinstance(output, Hangup):
                self.playout.add(output)
            elif isinstance(output, SwitchLanguage):
                self._use_language(output.language)
            else:
                self.emit(TtsStarted(text=output.text, cached=output.static))
                self.playout.add(self._utterance(output, turn))
        self._awaiting_first_audio = bool(outputs) and self._turn_end is not None

    def _use_language(self, language: str) -> None:
        """What the caller hears and is heard in from here on (the dialogue already switched)."""
        self.language = language
        self.models = self.engines.for_language(language)
        self.listener.use(self.models.recognizer, language)
        self.understanding.use_language(language)

    def _utterance(self, say: Say, turn: int) -> Utterance:
        """Static prompts come from the cache (pre-synthesised at startup, so fault prompts play even
        when the synthesizer is broken), from memory without a thread when they are there. Others
        are synthesised; when their opening clause is fixed words that were pre-synthesised too
        ("Just to check," ...), it plays from memory while the rest is synthesised."""
        voice = self.engines.for_language(say.language) if say.language else self.models
        if say.static:
            audio = voice.prompt_cache.in_memory(say.text)
            return Utterance(say, None if audio else self._cached(voice, say.text), audio)
        opening, rest = opening_clause(say.text)
        audio = voice.prompt_cache.in_memory(opening) if rest else None
        return Utterance(say, self._synthesized(voice, rest if audio else say.text, turn), audio)

    @staticmethod
    def _cached(voice: LanguageEngines, text: str) -> Iterator[bytes]:
        """Runs in a thread: the cache may read the disk or synthesise."""
        yield voice.prompt_cache.get(text)

    def _synthesized(self, voice: LanguageEngines, text: str, turn: int) -> Iterator[bytes]:
        """Runs in a thread. Sentence by sentence, a long first one cut after its first clause, so
        that the first audio is ready sooner."""
        check_faults(self.faults, "tts", turn)
        for part in first_clause(text):
            if part:
                yield from voice.synthesizer.synthesize(part)

    def _play(self) -> bytes:
        frame, happened = self.playout.next_frame()
        if isinstance(happened, Hangup):
            self._finish(happened.outcome, "bot_hangup")
        elif isinstance(happened, SpeechFailed):
            self.understanding.failed("tts", happened.error)
        elif isinstance(happened, Utterance) and self._awaiting_first_audio and self._turn_end is not None:
            ended_at, spoken = self._turn_end
            latency_ms = round((self._clock.now - ended_at) * 1000, 1)
            self.emit(
                TtsFirstAudio(
                    synth_ms=round(happened.synth_ms, 1),
                    turn_latency_ms=latency_ms if spoken else None,
                    key_latency_ms=None if spoken else latency_ms,
                )
            )
            self._awaiting_first_audio = False
            self._turn_end = None
        if self.playout.speaking:
            self._idle_ms = 0
        return frame

    def _finish(self, outcome: str, reason: str) -> None:
        if self.ended:
            return
        self.outcome = outcome
        self.emit(CallEnded(outcome=outcome, reason=reason, duration_ms=self.audio_ms))

"""Playout: a queue of utterances the bot says, one 20 ms frame at a time.

Each :class:`Utterance` is a handle (like LiveKit's ``SpeechHandle``): its audio arrives sentence by
sentence from a synthesis thread, it can be interrupted, and it reports once when it is finished.
:meth:`Playout.next_frame` never waits: while the next sentence is still being synthesised it
returns silence.

A barge-in by speech only pauses the playout (:meth:`Playout.pause`): until the caller's words are
recognised it is not known whether they were meant, or were a cough, an "uh-huh" or the bot's own
echo, after which the prompt plays on (:meth:`Playout.resume`, like LiveKit's "resume false
interruption").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from voicebot.audio import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES
from voicebot.audio.codecs import int16_from_pcm, split_frames
from voicebot.call.threads import SYNTHESIS, run_in
from voicebot.dialogue.manager import Hangup, Say
from voicebot.events import BotSaid, CallEvent, PromptResumed, TtsFinished

SILENCE = bytes(FRAME_BYTES)
LOOKAHEAD_FRAMES = 100  # 2 s: synthesise the next sentence when less than this is left to play
# Where a paused utterance plays on. Measured on Piper's joe voice: a comma or a sentence end leaves
# 120-300 ms below -50 dBFS, the gaps between words 20-60 ms.
QUIET_RMS = 100.0  # -50 dBFS
PHRASE_PAUSE_FRAMES = 5
WORD_GAP_FRAMES = 2
MAX_REWIND_FRAMES = 200  # 4 s: a longer phrase is taken up again at a word instead


@dataclass(frozen=True)
class SpeechFailed:
    """Synthesis of an utterance failed; the session tells the caller and escalates."""

    say: Say
    error: BaseException


class Utterance:
    """One :class:`Say` being played."""

    def __init__(self, say: Say, chunks: Iterator[bytes] | None, audio: bytes | None = None) -> None:
        """``chunks`` are synthesised in a thread, sentence by sentence (None: there is nothing to
        synthesise); ``audio`` already at hand (a cached prompt, or its opening) plays from the next
        frame, before them."""
        self.say = say
        self._chunks = chunks
        self._created = time.monotonic()
        # All of its audio so far, kept after playing: a resumed utterance backs up a little.
        self._frames: list[bytes] = split_frames(audio) if audio else []
        self.synth_ms = 0.0  # time to the first audio synthesised, when none was at hand
        self._timing_first_audio = not self._frames
        self._position = 0  # the next frame to play
        self._heard_frames = 0  # the furthest it has played
        self._more = chunks is not None  # sentences may still come from the synthesizer
        self._next_chunk: asyncio.Task[bytes | None] | None = None
        self._fetch_if_needed()
        self.started = False
        self.finished = False
        self.interrupted = False

    async def _synthesize_next(self) -> bytes | None:
        chunks = self._chunks
        assert chunks is not None  # fetched only while more may come
        chunk = await run_in(SYNTHESIS, lambda: next(chunks, None))
        if self._timing_first_audio:
            self._timing_first_audio = False
            self.synth_ms = (time.monotonic() - self._created) * 1000
        return chunk

    @property
    def pending(self) -> asyncio.Task[bytes | None] | None:
        """Synthesis still running for this utterance, if any."""
        task = self._next_chunk
        return task if task is not None and not task.done() else None

    def interrupt(self) -> None:
        """Stops the utterance where it is; its finished event says it was interrupted."""
        if self._next_chunk is not None:
            self._next_chunk.cancel()
            self._next_chunk = None
        self._more = False
        self.interrupted = True

    def rewind(self, talked_over_frames: int) -> None:
        """Backs up to where it should play on after a pause (see :func:`resume_point`)."""
        self._position = resume_point(self._frames, self._position, talked_over_frames)

    def next_frame(self) -> bytes | None:
        """The next frame; ``SILENCE`` while synthesis is behind, None when the utterance is over.

        Raises what synthesis raised."""
        if self.interrupted:
            return None
        task = self._next_chunk
        if task is not None and task.done():
            self._next_chunk = None
            chunk = task.result()
            if chunk is None:
                self._more = False
            else:
                self._frames.extend(split_frames(chunk))
        self._fetch_if_needed()
        if self._position < len(self._frames):
            frame = self._frames[self._position]
            self._position += 1
            self._heard_frames = max(self._heard_frames, self._position)
            return frame
        return SILENCE if self._more else None

    def _fetch_if_needed(self) -> None:
        # The next sentence is synthesised only when the audio at hand runs low, so the shared
        # synthesis threads serve other calls' first sentences before this call's later ones.
        ahead = len(self._frames) - self._position
        if self._more and self._next_chunk is None and ahead < LOOKAHEAD_FRAMES:
            self._next_chunk = asyncio.create_task(self._synthesize_next())

    @property
    def position_ms(self) -> int:
        """Where it is playing."""
        return self._position * FRAME_MS

    @property
    def heard_ms(self) -> int:
        """How much of it the caller has heard."""
        return self._heard_frames * FRAME_MS

    @property
    def total_ms(self) -> int:
        """How long it is, as far as it has been synthesised."""
        return len(self._frames) * FRAME_MS


def resume_point(frames: Sequence[bytes], stop: int, talked_over_frames: int) -> int:
    """The frame a paused utterance plays on from: the start of the phrase that was playing when the
    caller began to talk over it (just after the last pause at a comma or sentence end before that).

    Not the frame it stopped at, nor a fixed half second back: both usually fall inside a word, and
    the caller, talking, did not take in the words under their own voice anyway. Backing up also
    replays what a transport had buffered and dropped at the barge-in. A phrase that began more
    than MAX_REWIND_FRAMES earlier is not said again: it is taken up at the last gap between words.
    """
    before = max(0, stop - talked_over_frames)
    if before == 0:
        return 0
    earliest = max(0, before - MAX_REWIND_FRAMES)
    samples = int16_from_pcm(b"".join(frames[earliest:before])).astype(np.float64)
    quiet = np.sqrt(np.mean(samples.reshape(-1, FRAME_SAMPLES) ** 2, axis=1)) < QUIET_RMS
    pause_end = _last_pause_end(quiet, PHRASE_PAUSE_FRAMES)
    if pause_end is None and earliest == 0:
        return 0  # the phrase is the utterance's first
    if pause_end is None:
        pause_end = _last_pause_end(quiet, WORD_GAP_FRAMES)
    if pause_end is None:
        return before
    return earliest + pause_end  # the pause's last quiet frame: a breath before the words


def _last_pause_end(quiet: np.ndarray, needed: int) -> int | None:
    """The index of the last frame of the latest run of at least ``needed`` quiet frames."""
    run = 0
    for index in range(len(quiet) - 1, -1, -1):
        if quiet[index]:
            run += 1
            if run >= needed:
                return index + run - 1
        else:
            run = 0
    return None


class Playout:
    """The bot's side of the call: utterances and the hang-up marker, in order."""

    def __init__(self, emit: Callable[[CallEvent], None]) -> None:
        self._emit = emit
        self._queue: deque[Utterance | Hangup] = deque()
        self._paused = False
        self._talked_over_frames = 0  # how long the caller had talked over the paused utterance

    @property
    def speaking(self) -> bool:
        """The bot is talking or about to (not while paused)."""
        return not self._paused and any(isinstance(item, Utterance) for item in self._queue)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    @property
    def current(self) -> Utterance | None:
        head = self._queue[0] if self._queue else None
        return head if isinstance(head, Utterance) else None

    def pending(self) -> list[asyncio.Task[bytes | None]]:
        return [t for item in self._queue if isinstance(item, Utterance) and (t := item.pending) is not None]

    def add(self, item: Utterance | Hangup) -> None:
        self._queue.append(item)

    def next_frame(self) -> tuple[bytes, Utterance | Hangup | SpeechFailed | None]:
        """The bot's next frame and what happened: an utterance started, the hang-up was reached,
        or synthesis failed (the queue is then cleared)."""
        if self._paused:
            return SILENCE, None
        while self._queue:
            head = self._queue[0]
            if isinstance(head, Hangup):
                self._queue.clear()
                return SILENCE, head
            try:
                frame = head.next_frame()
            except Exception as exc:
                self.stop()
                return SILENCE, SpeechFailed(head.say, exc)
            if frame is None:
                self._queue.popleft()
                self._finished(head)
                continue
            if frame is SILENCE and not head.started:
                return SILENCE, None  # the first sentence is still being synthesised
            if not head.started:
                head.started = True
                self._emit(BotSaid(text=head.say.text, prompt_id=head.say.prompt_id,
                                   interruptible=head.say.interruptible))  # fmt: skip
                return frame, head
            return frame, None
        return SILENCE, None

    def pause(self, talked_over_ms: int) -> bool:
        """Holds the bot's speech where it is, from the next frame, until :meth:`resume` or
        :meth:`stop`. The whole queue waits, prompts marked not interruptible included, so nothing
        is said out of order. Returns False, pausing nothing, when the current utterance is not
        interruptible."""
        head = self.current
        if head is None or not head.say.interruptible:
            return False
        self._paused = True
        self._talked_over_frames = talked_over_ms // FRAME_MS
        return True

    def resume(self, reason: str) -> None:
        """Plays the paused utterance on from the start of the phrase the caller talked over."""
        head = self.current
        if not self._paused or head is None:
            return
        self._paused = False
        heard_ms = head.position_ms
        head.rewind(self._talked_over_frames)
        self._emit(PromptResumed(resumed_at_ms=head.position_ms, heard_ms=heard_ms, reason=reason))

    def stop(self, *, keep_uninterruptible: bool = False) -> None:
        """Interrupts queued speech, paused or not (the hang-up marker stays); a barge-in keeps
        prompts that are marked not interruptible."""
        self._paused = False
        kept: deque[Utterance | Hangup] = deque()
        for item in self._queue:
            if isinstance(item, Utterance) and not (keep_uninterruptible and not item.say.interruptible):
                item.interrupt()
                if item.started:
                    self._finished(item)
            else:
                kept.append(item)
        self._queue = kept

    def _finished(self, utterance: Utterance) -> None:
        if utterance.finished:
            return
        utterance.finished = True
        self._emit(
            TtsFinished(played_ms=utterance.heard_ms, total_ms=utterance.total_ms,
                        interrupted=utterance.interrupted)
        )  # fmt: skip

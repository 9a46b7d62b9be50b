"""Playout: a queue of utterances the bot says, one 20 ms frame at a time.

Each :class:`Utterance` is a handle (like LiveKit's ``SpeechHandle``): its audio arrives sentence by
sentence from a synthesis thread, it can be interrupted, and it reports once when it is finished.
:meth:`Playout.next_frame` never waits: while the next sentence is still being synthesised it
returns silence.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from voicebot.audio import FRAME_BYTES, FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.call.threads import SYNTHESIS, run_in
from voicebot.dialogue.manager import Hangup, Say
from voicebot.events import BotSaid, CallEvent, TtsFinished

SILENCE = bytes(FRAME_BYTES)
LOOKAHEAD_FRAMES = 100  # 2 s: synthesise the next sentence when less than this is left to play


@dataclass(frozen=True)
class SpeechFailed:
    """Synthesis of an utterance failed; the session tells the caller and escalates."""

    say: Say
    error: BaseException


class Utterance:
    """One :class:`Say` being played."""

    def __init__(self, say: Say, chunks: Iterator[bytes], audio: bytes | None = None) -> None:
        """``chunks`` are synthesised in a thread, sentence by sentence; ``audio`` already at hand
        (a cached prompt) plays from the next frame without one."""
        self.say = say
        self._chunks = chunks
        self._created = time.monotonic()
        self.synth_ms = 0.0  # time to the first sentence's audio
        self._frames: deque[bytes] = deque(split_frames(audio) if audio else ())
        self._more = audio is None  # sentences may still come from the synthesizer
        self._next_chunk: asyncio.Task[bytes | None] | None = None
        self._fetch_if_needed()
        self.played_frames = 0
        self.total_frames = len(self._frames)
        self.started = False
        self.finished = False
        self.interrupted = False

    async def _synthesize_next(self) -> bytes | None:
        chunk = await run_in(SYNTHESIS, lambda: next(self._chunks, None))
        if not self.synth_ms:
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
        self._frames.clear()
        self.interrupted = True

    def next_frame(self) -> bytes | None:
        """The next frame; ``SILENCE`` while synthesis is behind, None when the utterance is over.

        Raises what synthesis raised."""
        task = self._next_chunk
        if task is not None and task.done():
            self._next_chunk = None
            chunk = task.result()
            if chunk is None:
                self._more = False
            else:
                frames = split_frames(chunk)
                self._frames.extend(frames)
                self.total_frames += len(frames)
        self._fetch_if_needed()
        if self._frames:
            self.played_frames += 1
            return self._frames.popleft()
        return SILENCE if self._more else None

    def _fetch_if_needed(self) -> None:
        # The next sentence is synthesised only when the audio at hand runs low, so the shared
        # synthesis threads serve other calls' first sentences before this call's later ones.
        if self._more and self._next_chunk is None and len(self._frames) < LOOKAHEAD_FRAMES:
            self._next_chunk = asyncio.create_task(self._synthesize_next())

    @property
    def heard_ms(self) -> int:
        return self.played_frames * FRAME_MS

    @property
    def total_ms(self) -> int:
        return self.total_frames * FRAME_MS


class Playout:
    """The bot's side of the call: utterances and the hang-up marker, in order."""

    def __init__(self, emit: Callable[[CallEvent], None]) -> None:
        self._emit = emit
        self._queue: deque[Utterance | Hangup] = deque()

    @property
    def speaking(self) -> bool:
        return any(isinstance(item, Utterance) for item in self._queue)

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

    def stop(self, *, keep_uninterruptible: bool = False) -> None:
        """Interrupts queued speech (the hang-up marker stays); a barge-in keeps prompts that
        are marked not interruptible."""
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

"""A live call through the machine's microphone and speakers (PortAudio via ``sounddevice``).

Both streams run at the device's own default rate; audio is resampled to and from the call's
16 kHz and cut into 20 ms frames. The microphone paces the call: every 20 ms frame it delivers is
one :meth:`CallSession.step`, whose bot frame is queued for the speaker.

With laptop speakers the microphone hears the bot. :class:`EchoSuppressor` gates microphone frames
whose energy the bot's recently played audio explains, so the bot does not barge in on itself,
while a caller clearly louder than the echo still gets through.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sounddevice as sd

from voicebot.audio import DTMF_KEYS, FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from voicebot.audio.codecs import StreamResampler, int16_from_pcm
from voicebot.call import SILENCE, CallSession
from voicebot.errors import VoicebotError
from voicebot.events import BargeIn, CallEvent

HANGUP_KEY = "q"
_FRAME_S = FRAME_MS / 1000
# Queued bot silence beyond this is dropped, so the speaker does not lag after the call stalled
# (recognition, synthesis) and caught up on the microphone's backlog. Speech is never dropped.
_MAX_QUEUED_SILENCE_FRAMES = 3
_WARM_UP_MS = 1500
_SPEAKER_LATENCY_S = 0.15
_ESTIMATE_EVERY_MS = 500


def list_devices() -> str:
    return str(sd.query_devices())


def frame_rms(pcm: bytes) -> float:
    samples = int16_from_pcm(pcm).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def dbfs(rms: float) -> float:
    return 20 * math.log10(max(rms, 1.0) / 32768)


@dataclass(frozen=True)
class EchoEstimate:
    gain_db: float  # echo level relative to the played bot audio
    delay_ms: int | None  # None: no clear echo delay found (the predictor uses its whole window)


class EchoSuppressor:
    """Gates microphone frames explained by the bot's own audio coming back through the room.

    Time is counted in 20 ms slots of one shared clock: :meth:`played` is told when each bot frame
    reaches the speaker, :meth:`process` when each microphone frame was captured. Every 500 ms the
    echo path is re-estimated over the last seconds: its delay as the lag that best correlates
    the microphone's log energy with the played audio's, its gain as the median ratio of microphone
    energy to the played energy at that delay (the median ignores a caller talking over a minority
    of the frames; while the caller's talk blurs the correlation, the gain may only fall). A
    microphone frame is echo, and replaced by silence, when its energy is below ``margin_db`` above
    the echo predicted from the loudest bot frame within two slots of the delay. Until enough bot
    audio has been played, the echo is assumed as loud as the bot itself.
    """

    def __init__(
        self,
        *,
        margin_db: float = 10.0,
        initial_gain_db: float = 0.0,
        max_delay_ms: int = 1000,
        history_ms: int = 6000,
        active_dbfs: float = -50.0,
    ) -> None:
        self._margin = 10 ** (margin_db / 20)
        self._gain = 10 ** (initial_gain_db / 20)
        self._max_delay = max_delay_ms // FRAME_MS
        self._size = history_ms // FRAME_MS
        self._active = 32768 * 10 ** (active_dbfs / 20)
        self._ref = np.zeros(self._size)
        self._ref_slot = np.full(self._size, -1, dtype=np.int64)
        self._mic = np.zeros(self._size)
        self._mic_slot = np.full(self._size, -1, dtype=np.int64)
        self._delay: int | None = None
        self._lock = threading.Lock()  # played() runs on the audio thread
        self._frames_since_estimate = 0
        self.gated_frames = 0  # frames with sound in them taken for echo
        self.last_gated = False

    @property
    def estimate(self) -> EchoEstimate:
        delay = None if self._delay is None else self._delay * FRAME_MS
        return EchoEstimate(round(20 * math.log10(max(self._gain, 1e-6)), 1), delay)

    def played(self, frame: bytes, slot: int) -> None:
        """The bot frame ``frame`` reaches the speaker in ``slot``."""
        with self._lock:
            cell = slot % self._size
            previous = self._ref[cell] if self._ref_slot[cell] == slot else 0.0
            self._ref[cell] = max(previous, frame_rms(frame))
            self._ref_slot[cell] = slot

    def process(self, frame: bytes, slot: int) -> bytes:
        """Returns the microphone frame captured in ``slot``, or silence when it is the bot's echo."""
        rms = frame_rms(frame)
        cell = slot % self._size
        self._mic[cell], self._mic_slot[cell] = rms, slot
        self._frames_since_estimate += 1
        if self._frames_since_estimate * FRAME_MS >= _ESTIMATE_EVERY_MS:
            self._frames_since_estimate = 0
            self._estimate(slot)
        predicted = float(self._predictor(np.array([slot]), self._delay)[0])
        self.last_gated = predicted > self._active and rms <= self._margin * self._gain * predicted
        if self.last_gated:
            self.gated_frames += rms > self._active  # count echo heard, not silence replaced by silence
            return SILENCE
        return frame

    def _values(self, values: np.ndarray, owners: np.ndarray, slots: np.ndarray) -> np.ndarray:
        cells = slots % self._size
        return np.where(owners[cells] == slots, values[cells], 0.0)

    def _predictor(self, slots: np.ndarray, delay: int | None) -> np.ndarray:
        """The loudest bot frame each microphone slot could be hearing at that echo delay."""
        lags = np.arange(0, self._max_delay + 1) if delay is None else np.arange(delay - 2, delay + 3)
        with self._lock:
            played = self._values(self._ref, self._ref_slot, slots[:, None] - lags[None, :])
        return played.max(axis=1)

    def _estimate(self, now: int) -> None:
        slots = np.arange(now - self._size + self._max_delay + 1, now + 1)
        mic = self._values(self._mic, self._mic_slot, slots)
        with self._lock:
            ref = np.stack(
                [self._values(self._ref, self._ref_slot, slots - d) for d in range(self._max_delay + 1)]
            )
        if np.count_nonzero(ref[0] > self._active) < 1000 // FRAME_MS:
            return  # under a second of bot audio: nothing to learn from yet
        # Only moments the bot's audio could be in the microphone tell about the echo (not the caller
        # speaking alone).
        echo_possible = ref.max(axis=0) > self._active
        log_mic, log_ref = np.log1p(mic[echo_possible]), np.log1p(ref[:, echo_possible])
        centred_mic = log_mic - log_mic.mean()
        centred_ref = log_ref - log_ref.mean(axis=1, keepdims=True)
        spread = np.linalg.norm(centred_mic) * np.linalg.norm(centred_ref, axis=1)
        correlation = np.where(spread > 0, centred_ref @ centred_mic / np.maximum(spread, 1e-9), 0.0)
        best = int(np.argmax(correlation))
        # The microphone follows the bot's audio closely only while the caller is quiet (measured over
        # PulseAudio's loopback: 0.85-0.97 with echo alone, at most 0.53 at wrong lags with a caller).
        echo_only = correlation[best] >= 0.7
        if echo_only:
            self._delay = best
        predicted = self._predictor(slots, self._delay)
        active = predicted > self._active
        if not active.any():
            return
        measured = float(np.median(mic[active] / predicted[active]))
        # With the caller talking over the bot the ratio overstates the echo: then only lower it (a
        # headset, with no echo to correlate, ends up with a gain at its noise floor).
        self._gain = measured if echo_only else min(measured, self._gain)


class _Playback:
    """The speaker: 16 kHz bot frames in, the device's rate out, on PortAudio's thread.

    When each frame reaches the speaker is counted in samples from PortAudio's time for the current
    buffer: callbacks may come in bursts, and soxr hands out its output in blocks."""

    def __init__(self, device: int | str | None, on_played: Callable[[bytes, float], None]) -> None:
        self.rate = int(sd.query_devices(device, "output")["default_samplerate"])
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()  # the main loop flushes while the audio thread pops
        self._pending = bytearray()
        self._resampler = StreamResampler(SAMPLE_RATE, self.rate)
        self._frames_fed = 0  # bot frames given to the resampler
        self._samples_out = 0  # device samples given to PortAudio
        self._on_played = on_played
        self.stream = sd.RawOutputStream(
            samplerate=self.rate,
            channels=1,
            dtype="int16",
            device=device,
            callback=self._callback,
            # PortAudio's default 35 ms underran while recognition and synthesis held the GIL.
            latency=_SPEAKER_LATENCY_S,
        )

    def write(self, frame: bytes) -> None:
        self._queue.append(frame)

    @property
    def has_speech(self) -> bool:
        return any(frame != SILENCE for frame in list(self._queue))  # list(): one atomic copy

    def flush(self) -> None:
        """Drops queued bot audio (the caller barged in: stop talking now, not after the backlog)."""
        with self._lock:
            self._queue.clear()

    def _next_frame(self) -> bytes:
        with self._lock:
            while len(self._queue) > _MAX_QUEUED_SILENCE_FRAMES and self._queue[0] == SILENCE:
                self._queue.popleft()
            return self._queue.popleft() if self._queue else SILENCE

    def _callback(self, outdata: memoryview, frames: int, time_info: Any, status: object) -> None:
        needed = frames * 2
        buffer_starts_at = time_info.outputBufferDacTime or time_info.currentTime
        while len(self._pending) < needed:
            frame = self._next_frame()
            first_sample = self._frames_fed * FRAME_SAMPLES * self.rate / SAMPLE_RATE
            self._on_played(frame, buffer_starts_at + (first_sample - self._samples_out) / self.rate)
            self._frames_fed += 1
            self._pending += self._resampler.process(frame)
        outdata[:] = self._pending[:needed]
        del self._pending[:needed]
        self._samples_out += frames


class _Capture:
    """The microphone: blocks at the device's rate in, 16 kHz frames out, each with the time it was
    captured (counted in samples from PortAudio's time for the latest block)."""

    def __init__(self, device: int | str | None) -> None:
        self.rate = int(sd.query_devices(device, "input")["default_samplerate"])
        self._blocks: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._resampler = StreamResampler(self.rate, SAMPLE_RATE)
        self._pending = bytearray()
        self._samples_in = 0  # device samples before the latest block
        self._frames_out = 0
        self.stream = sd.RawInputStream(
            samplerate=self.rate,
            channels=1,
            dtype="int16",
            device=device,
            blocksize=int(self.rate * _FRAME_S),
            callback=self._callback,
        )

    def _callback(self, indata: memoryview, frames: int, time_info: Any, status: object) -> None:
        captured_at = time_info.inputBufferAdcTime or time_info.currentTime
        self._loop.call_soon_threadsafe(self._blocks.put_nowait, (bytes(indata), captured_at))

    async def frames(self) -> list[tuple[bytes, float]]:
        """Waits for the next block; returns the whole frames it completes, with their capture times."""
        block, block_captured_at = await self._blocks.get()
        self._pending += self._resampler.process(block)
        block_start = self._samples_in
        self._samples_in += len(block) // 2
        frames: list[tuple[bytes, float]] = []
        while len(self._pending) >= FRAME_BYTES:
            first_sample = self._frames_out * FRAME_SAMPLES * self.rate / SAMPLE_RATE
            captured_at = block_captured_at + (first_sample - block_start) / self.rate
            frames.append((bytes(self._pending[:FRAME_BYTES]), captured_at))
            del self._pending[:FRAME_BYTES]
            self._frames_out += 1
        return frames


@dataclass(frozen=True)
class MicFrame:
    """One 20 ms step of a live call, for the recorder and the level meter."""

    raw: bytes  # what the microphone picked up, at 16 kHz
    heard: bytes  # what the call heard (after echo suppression)
    bot: bytes  # what the bot said in the same step
    echo_gated: bool
    level_db: float  # the microphone's level, dBFS


def _slot(seconds: float) -> int:
    return round(seconds / _FRAME_S)


def _device(spec: str | None) -> int | str | None:
    """A device index or a substring of its name, as `--list-devices` shows them."""
    return int(spec) if spec is not None and spec.isdigit() else spec


def _device_error(exc: Exception) -> VoicebotError:
    return VoicebotError(f"cannot open the audio devices ({exc}); see `voicebot mic --list-devices`")


def check_devices(input_device: str | None, output_device: str | None) -> None:
    """Fails early, with a clear message, when the devices cannot record or play 16-bit mono."""
    try:
        sd.check_input_settings(device=_device(input_device), channels=1, dtype="int16")
        sd.check_output_settings(device=_device(output_device), channels=1, dtype="int16")
    except (sd.PortAudioError, ValueError) as exc:
        raise _device_error(exc) from exc


async def run_mic_call(
    session: CallSession,
    *,
    input_device: str | None = None,
    output_device: str | None = None,
    keys: asyncio.Queue[str] | None = None,
    suppressor: EchoSuppressor | None = None,
    frame_listeners: list[Callable[[MicFrame], None]] | None = None,
) -> None:
    """Runs the call until it ends or ``q`` arrives on ``keys`` (other keys: DTMF 0-9 * #)."""
    mic_device, speaker_device = _device(input_device), _device(output_device)

    def on_played(frame: bytes, play_time: float) -> None:
        if suppressor is not None:
            suppressor.played(frame, _slot(play_time))

    try:
        playback = _Playback(speaker_device, on_played)
        capture = _Capture(mic_device)
    except (sd.PortAudioError, ValueError) as exc:
        raise _device_error(exc) from exc

    def stop_talking_on_barge_in(event: CallEvent) -> None:
        if isinstance(event, BargeIn):
            playback.flush()

    session.listeners.append(stop_talking_on_barge_in)
    try:
        with playback.stream, capture.stream:
            # PortAudio's stream times settle only a while after both streams run (through PulseAudio,
            # the echo seemed to come up to 400 ms before the bot spoke for the first 1.5 s): warm up.
            warmed_ms = 0
            while warmed_ms < _WARM_UP_MS:
                warmed_ms += FRAME_MS * len(await capture.frames())
            await session.start()
            while not session.ended:
                for raw, captured_at in await capture.frames():
                    key = keys.get_nowait() if keys is not None and not keys.empty() else None
                    if key == HANGUP_KEY:
                        await session.hangup()
                    if session.ended:
                        break
                    heard = suppressor.process(raw, _slot(captured_at)) if suppressor is not None else raw
                    dtmf = key if key in DTMF_KEYS else None
                    # A live line: the frame came now (the turn latency is timed in wall time).
                    bot = await session.step(heard, dtmf, arrived=time.monotonic())
                    playback.write(bot)
                    gated = suppressor is not None and suppressor.last_gated
                    frame = MicFrame(raw, heard, bot, gated, dbfs(frame_rms(raw)))
                    for listener in frame_listeners or []:
                        listener(frame)
            # Let the last words (goodbye, transfer) reach the speaker before closing it.
            while playback.has_speech:
                await asyncio.sleep(_FRAME_S)
    finally:
        if not session.ended:
            await session.hangup()
        session.listeners.remove(stop_talking_on_barge_in)

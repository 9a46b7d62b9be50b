"""A simulated caller: plays scripted turns into a call, frame by frame, like a person would.

The caller waits until the bot has answered and gone quiet, then speaks (or keys digits, or stays
silent); a barge-in turn starts talking over the bot's reply instead. Real-time pacing is optional:
the call's timers run on the audio clock, and each frame lets the call's work settle (without a
limit when unpaced, within the frame's 20 ms when paced), so a paced and an unpaced run behave the
same while the models are fast enough.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from voicebot.audio import FRAME_MS
from voicebot.audio.codecs import split_frames
from voicebot.call import SILENCE, CallSession


@dataclass(frozen=True)
class CallerTurn:
    audio: bytes = b""  # 16 kHz mono s16le
    dtmf: str = ""
    silent: bool = False  # say nothing: the bot's no-input timer runs
    hangup: bool = False  # hang up instead of answering
    barge_in_ms: int | None = None  # start this long into the bot's reply, talking over it


@dataclass
class SimulatedCall:
    session: CallSession
    caller_audio: bytearray = field(default_factory=bytearray)
    bot_audio: bytearray = field(default_factory=bytearray)
    turn_starts_ms: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class CallerTiming:
    gap_ms: int = 500  # the caller answers this long after the bot goes quiet
    dtmf_interval_ms: int = 200
    response_timeout_ms: int = 20_000  # the bot stayed quiet this long after the turn: go on anyway
    max_call_ms: int = 300_000


async def run_simulated_call(
    session: CallSession,
    turns: list[CallerTurn],
    *,
    paced: bool = False,
    timing: CallerTiming = CallerTiming(),
) -> SimulatedCall:
    """Runs the whole call; the caller hangs up once the bot has answered the last turn."""
    call = SimulatedCall(session)
    await session.start()
    await session.settle()
    pending = deque(turns)
    frames: deque[bytes] = deque()
    keys: deque[str] = deque()
    playing = False
    bot_answered = False  # the bot has spoken since the caller's last turn
    quiet_ms = speaking_ms = waited_ms = key_wait_ms = 0
    next_tick = time.monotonic()
    while not session.ended and session.audio_ms < timing.max_call_ms:
        if not playing:
            turn = pending[0] if pending else None
            answered = bot_answered and quiet_ms >= timing.gap_ms
            if turn is None:
                if answered or waited_ms >= timing.response_timeout_ms:
                    await session.hangup()
                    break
            elif (
                (turn.barge_in_ms is not None and speaking_ms >= turn.barge_in_ms)
                or (turn.barge_in_ms is None and answered)
                or waited_ms >= timing.response_timeout_ms
            ):
                pending.popleft()
                call.turn_starts_ms.append(session.audio_ms)
                if turn.hangup:
                    await session.hangup()
                    break
                frames.extend(split_frames(turn.audio) if turn.audio else [])
                keys.extend(turn.dtmf)
                playing = not turn.silent
                bot_answered = False
                waited_ms = 0
        caller_frame, key = SILENCE, None
        if playing:
            if frames:
                caller_frame = frames.popleft()
            elif keys:
                key_wait_ms += FRAME_MS
                if key_wait_ms >= timing.dtmf_interval_ms:
                    key, key_wait_ms = keys.popleft(), 0
            else:
                playing = False
        # Paced, the caller's frame comes now, in real time: the turn latency is timed in wall time.
        bot_frame = await session.step(caller_frame, key, arrived=time.monotonic() if paced else None)
        call.caller_audio += caller_frame
        call.bot_audio += bot_frame
        if session.bot_speaking:
            # Only speech after the caller finished answers the turn (not the prompt they talked over).
            bot_answered = bot_answered or not playing
            speaking_ms += FRAME_MS
            quiet_ms = waited_ms = 0
        else:
            speaking_ms = 0
            quiet_ms += FRAME_MS
            if not playing:
                waited_ms += FRAME_MS
        if paced:
            next_tick += FRAME_MS / 1000
            await session.settle(timeout=max(0.0, next_tick - time.monotonic()))
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        else:
            await session.settle()
    if not session.ended:
        await session.hangup()
    return call

"""Worker threads by kind of work, shared by all calls.

Each kind has its own pool so a backlog of one never delays another: under load recognitions wait
for the recogniser's workers, and the dialogue (a PIN check hashes for ~36 ms) and the next
sentence's synthesis must not queue behind them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

RECOGNITION = ThreadPoolExecutor(max_workers=4, thread_name_prefix="voicebot-asr")
SYNTHESIS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voicebot-tts")
DIALOGUE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="voicebot-dialogue")
# End-of-turn inference (~25 ms): its own pool so it never waits behind a recognition.
TURN = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voicebot-turn")


async def run_in(pool: ThreadPoolExecutor, work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, work)

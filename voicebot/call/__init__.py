"""The call core: one call as a chain of stages (listener -> understanding -> playout)."""

from voicebot.call.faults import Fault
from voicebot.call.playout import SILENCE
from voicebot.call.session import CallSession

__all__ = ["SILENCE", "CallSession", "Fault"]

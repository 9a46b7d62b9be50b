"""Durable storage for the contact centre: calls, traces, handoffs, queue entries, agents, dispositions
and callbacks. :class:`Storage` is the interface; :class:`SqliteStorage` the implementation."""

from voicebot.storage.base import (
    AgentAccount,
    CallbackRequest,
    CallRow,
    DispositionRow,
    QueueEntryRow,
    Storage,
)
from voicebot.storage.sqlite import SCHEMA_VERSION, SqliteStorage

__all__ = [
    "SCHEMA_VERSION",
    "AgentAccount",
    "CallRow",
    "CallbackRequest",
    "DispositionRow",
    "QueueEntryRow",
    "SqliteStorage",
    "Storage",
]

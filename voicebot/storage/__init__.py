"""Durable storage for the contact centre: calls, traces, handoffs, queue entries, agents, dispositions,
callbacks, pending wrap-ups and web sessions. :class:`Storage` is the interface; :class:`SqliteStorage`
the implementation."""

from voicebot.storage.base import (
    AgentAccount,
    AgentStateRow,
    CallbackRequest,
    CallRow,
    DispositionRow,
    PendingWrapUp,
    QueueEntryRow,
    Storage,
    WebSessionRow,
)
from voicebot.storage.sqlite import SCHEMA_VERSION, SqliteStorage

__all__ = [
    "SCHEMA_VERSION",
    "AgentAccount",
    "AgentStateRow",
    "CallRow",
    "CallbackRequest",
    "DispositionRow",
    "PendingWrapUp",
    "QueueEntryRow",
    "SqliteStorage",
    "Storage",
    "WebSessionRow",
]

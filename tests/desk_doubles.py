"""Stand-ins for a desk's WebSocket and a caller's line, for the contact centre's unit tests."""

from __future__ import annotations

from typing import Any

from voicebot.events import CallEvent
from voicebot.server.hold import HoldPlayer
from voicebot.server.room import CallRoom


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeSocket:
    """What a desk's WebSocket is to the contact centre: it keeps what it was sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.audio: list[bytes] = []
        self.closed = False

    async def send_json(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def send_bytes(self, frame: bytes) -> None:
        self.audio.append(frame)

    async def close(self, **_: Any) -> None:
        self.closed = True

    def last_state(self) -> dict[str, Any]:
        return [m for m in self.messages if m["type"] == "state"][-1]

    def offers(self) -> list[str]:
        return [m["call_id"] for m in self.messages if m["type"] == "offer"]


class FakeCaller:
    """A caller link with no line: a room that plays hold music only, no live transcript."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.agent_left = False
        self.events: list[CallEvent] = []

    def open_room(self, agent: str) -> CallRoom:
        return CallRoom(self.call_id, HoldPlayer(None, "en"))

    def agent_hung_up(self) -> None:
        self.agent_left = True

    def event(self, event: CallEvent) -> None:
        self.events.append(event)

"""The NLU interface: text in, ranked intents and entities out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True)
class Entity:
    entity: str
    value: Any
    text: str = ""
    start: int | None = None
    end: int | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class NluResult:
    text: str
    intent: IntentScore
    ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = field(default_factory=tuple)

    def entity(self, name: str) -> Entity | None:
        return next((e for e in self.entities if e.entity == name), None)


class NluEngine(Protocol):
    """Loaded once per process and shared by all calls."""

    name: str

    async def parse(self, text: str) -> NluResult: ...

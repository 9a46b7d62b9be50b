"""The automatic call distributor (ACD): queued calls, agent states, offers and wait estimates.

Pure bookkeeping on a clock the caller passes in (``now``, seconds); the server drives it. Calls are
served oldest first across queues, each only by an agent with its skills: one who speaks the caller's
language (the handoff record's) and serves its queue (an agent with no queues serves every queue).
An offer goes to the eligible ready agent who has been idle longest and moves on when it is not
accepted in time; a call no logged-in agent can take keeps waiting, it is never offered to the
wrong agent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.handoff.record import HandoffRecord

AGENT_STATES = ("not_ready", "ready", "offered", "talking", "wrap_up")


@dataclass(frozen=True)
class TransferRequest:
    """An agent's transfer of their call: ``cold`` (the caller waits for the target, on hold) or
    ``warm`` (the agent consults the target first, the caller on hold meanwhile)."""

    from_agent: str
    mode: str  # cold | warm
    note: str  # for the target, shown with the screen pop before they accept
    queue: str  # the target queue (the call's own when an agent is named)
    agent: str | None = None  # a named agent: only they are offered it


@dataclass
class QueuedCall:
    call_id: str
    record: HandoffRecord
    entered_at: float
    entry_id: int = 0  # storage row (0: none, a warm transfer's consult is no caller waiting)
    offered_to: str | None = None
    offer_expires_at: float = 0.0
    transfer: TransferRequest | None = None  # served before callers who have not reached an agent yet

    @property
    def queue(self) -> str:
        return self.transfer.queue if self.transfer is not None else self.record.queue

    @property
    def language(self) -> str:
        return self.record.language


@dataclass
class AgentSeat:
    username: str
    state: str = "not_ready"
    since: float = 0.0
    call_id: str | None = None
    languages: tuple[str, ...] = ("en",)  # the callers' languages the agent speaks
    queues: tuple[str, ...] = ()  # the queues the agent serves; empty: every queue

    def can_take(self, call: QueuedCall) -> bool:
        if call.transfer is not None and call.transfer.agent is not None:
            return call.transfer.agent == self.username  # a named agent: them, whatever their skills
        return call.language in self.languages and (not self.queues or call.queue in self.queues)


@dataclass(frozen=True)
class Offer:
    call: QueuedCall
    agent: str


def erlang_c_wait_probability(traffic_erlangs: float, agents: int) -> float:
    """P(wait) from Erlang C; 1.0 when the agents cannot keep up (agents <= traffic)."""
    if agents <= traffic_erlangs:
        return 1.0
    top = traffic_erlangs**agents / math.factorial(agents) * agents / (agents - traffic_erlangs)
    bottom = sum(traffic_erlangs**k / math.factorial(k) for k in range(agents)) + top
    return top / bottom


def erlang_c_asa(calls_per_s: float, aht_s: float, agents: int) -> float:
    """Average speed of answer (s) predicted by Erlang C; infinite when understaffed."""
    traffic = calls_per_s * aht_s
    if agents <= traffic:
        return math.inf
    return erlang_c_wait_probability(traffic, agents) * aht_s / (agents - traffic)


def erlang_c_service_level(calls_per_s: float, aht_s: float, agents: int, within_s: float) -> float:
    traffic = calls_per_s * aht_s
    if agents <= traffic:
        return 0.0
    return 1 - erlang_c_wait_probability(traffic, agents) * math.exp(-(agents - traffic) * within_s / aht_s)


class Acd:
    def __init__(
        self,
        offer_timeout_s: float,
        initial_aht_s: float = 180.0,
        on_state: Callable[[str, str | None, float], None] | None = None,
    ) -> None:
        self.offer_timeout_s = offer_timeout_s
        self.aht_s = initial_aht_s  # running average of handle time, as Asterisk keeps it
        self.calls: dict[str, QueuedCall] = {}
        self.agents: dict[str, AgentSeat] = {}
        # Told every change of an agent's state (None: logged out), for their figures over time.
        self.on_state = on_state

    # ----- calls ---------------------------------------------------------------------------------

    def enqueue(self, call: QueuedCall) -> None:
        self.calls[call.call_id] = call

    def remove(self, call_id: str, now: float) -> QueuedCall | None:
        """The call left the queue unanswered; an agent it was being offered to is ready again."""
        call = self.calls.pop(call_id, None)
        if call is not None and call.offered_to is not None:
            self._set_state(call.offered_to, "ready", now)
        return call

    def waiting(self, queue: str | None = None) -> list[QueuedCall]:
        calls = sorted(self.calls.values(), key=lambda c: (c.transfer is None, c.entered_at))
        return [c for c in calls if queue is None or c.queue == queue]

    def position(self, call_id: str) -> int:
        """1 for the next call to be answered in its queue and language (calls in other languages
        wait for other agents)."""
        call = self.calls[call_id]
        ahead = [c.call_id for c in self.waiting(call.queue) if c.language == call.language]
        return ahead.index(call_id) + 1

    def estimated_wait_s(self, call_id: str) -> float:
        """Calls ahead (and this one) x average handle time / agents serving who could take this call
        (Genesys's estimate)."""
        call = self.calls[call_id]
        serving = sum(1 for seat in self.agents.values() if seat.state != "not_ready" and seat.can_take(call))
        return self.position(call_id) * self.aht_s / max(1, serving)

    def record_handle_time(self, seconds: float) -> None:
        self.aht_s = (3 * self.aht_s + seconds) / 4

    # ----- agents --------------------------------------------------------------------------------

    def login(
        self, username: str, now: float, languages: tuple[str, ...] = ("en",), queues: tuple[str, ...] = ()
    ) -> AgentSeat:
        """The agent's seat with the skills of their account (a second login keeps the seat's state)."""
        seat = self.agents.get(username)
        if seat is None:
            seat = self.agents[username] = AgentSeat(username, since=now)
            self._changed(username, seat.state, now)
        seat.languages, seat.queues = tuple(languages), tuple(queues)
        return seat

    def restore(self, username: str, state: str, since: float, call_id: str | None) -> None:
        """The seat back in a state it was in before a reconnect (a wrap-up left open)."""
        seat = self.agents[username]
        seat.state, seat.since, seat.call_id = state, since, call_id
        self._changed(username, state, since)

    def logout(self, username: str, now: float) -> QueuedCall | None:
        """Returns the call that was being offered to this agent, if any (it goes back to waiting)."""
        seat = self.agents.pop(username, None)
        if seat is not None:
            self._changed(username, None, now)
        if seat is None or seat.state != "offered" or seat.call_id is None:
            return None
        call = self.calls.get(seat.call_id)
        if call is not None:
            call.offered_to = None
        return call

    def set_ready(self, username: str, ready: bool, now: float) -> None:
        seat = self.agents[username]
        if seat.state in ("offered", "talking"):
            raise ValueError(f"agent {username} is {seat.state}")
        if seat.state == "wrap_up":  # the disposition is required: finish_wrap_up makes them ready
            raise ValueError("submit the wrap-up's disposition first")
        self._set_state(username, "ready" if ready else "not_ready", now)

    def _set_state(self, username: str, state: str, now: float, call_id: str | None = None) -> None:
        seat = self.agents.get(username)
        if seat is not None:
            changed = seat.state != state
            seat.state, seat.since, seat.call_id = state, now, call_id
            if changed:
                self._changed(username, state, now)

    def _changed(self, username: str, state: str | None, now: float) -> None:
        if self.on_state is not None:
            self.on_state(username, state, now)

    # ----- offers --------------------------------------------------------------------------------

    def dispatch(self, now: float) -> tuple[list[Offer], list[Offer]]:
        """Expires stale offers, then offers waiting calls to ready agents, oldest call first.
        Returns (expired offers, new offers)."""
        expired = []
        for call in self.calls.values():
            if call.offered_to is not None and now >= call.offer_expires_at:
                # Ring-no-answer: this agent is made not ready so the next offer goes elsewhere.
                expired.append(Offer(call, call.offered_to))
                self._set_state(call.offered_to, "not_ready", now)
                call.offered_to = None
        offers = []
        for call in self.waiting():
            if call.offered_to is not None:
                continue
            # Ready agents change with each offer, so look again for every call.
            ready = [seat for seat in self.agents.values() if seat.state == "ready" and seat.can_take(call)]
            if not ready:
                continue  # nobody for this one now: it keeps waiting, a younger call may be taken
            seat = min(ready, key=lambda candidate: candidate.since)
            call.offered_to, call.offer_expires_at = seat.username, now + self.offer_timeout_s
            self._set_state(seat.username, "offered", now, call.call_id)
            offers.append(Offer(call, seat.username))
        return expired, offers

    def accept(self, username: str, call_id: str, now: float) -> QueuedCall:
        call = self.calls.get(call_id)
        if call is None or call.offered_to != username:
            raise ValueError(f"call {call_id} is not offered to {username}")
        del self.calls[call_id]
        self._set_state(username, "talking", now, call_id)
        return call

    def end_talk(self, username: str, now: float) -> None:
        self._set_state(username, "wrap_up", now, self.agents[username].call_id)

    def finish_wrap_up(self, username: str, now: float) -> None:
        self._set_state(username, "ready", now)

"""Each agent's figures over a time window, with the definitions used (see docs/server.md).

From the dispositions whose talk started in the window (one per handled call):

- handled: those calls
- hold time: the time the caller spent on hold during the agent's talk (the disposition's ``hold_s``);
  ``hold_s`` is the total over the handled calls, ``held_calls`` how many of them had some hold
- AHT: mean handle time, talk (hold included) + wrap-up: wrap-up's end - talk's start
- talk: mean talk without hold: talk's end - talk's start - hold time
- wrap-up: mean wrap-up: wrap-up's end - talk's end
- dispositions: how many of each (resolved, follow_up, transferred)

From the agent's states, each stretch clipped to the window (a state still on ends now):

- logged in: time in any state (logged-out time has no state)
- occupancy: time talking + time in wrap-up / time ready + offered + talking + in wrap-up (Not-ready
  time is out of both)

A figure with nothing to count (an AHT without handled calls, an occupancy without time available)
is None.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from voicebot.server.contact_center import DISPOSITIONS
from voicebot.server.kpis import _mean, _ratio
from voicebot.storage import AgentStateRow, DispositionRow, Storage

BUSY_STATES = ("talking", "wrap_up")
AVAILABLE_STATES = ("ready", "offered", *BUSY_STATES)


def state_times(rows: list[AgentStateRow], since: float, now: float) -> dict[str, dict[str, float]]:
    """Seconds each agent spent in each state within [since, now]."""
    times: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        start = max(row.started_at, since)
        end = min(now if row.ended_at is None else row.ended_at, now)
        times[row.agent][row.state] += max(0.0, end - start)
    return times


def _call_figures(handled: list[DispositionRow]) -> dict[str, Any]:
    outcomes = {disposition: 0 for disposition in DISPOSITIONS}
    for row in handled:
        outcomes[row.disposition] += 1
    return {
        "handled": len(handled),
        "aht_s": _mean([row.handle_s for row in handled]),
        "talk_s": _mean([max(0.0, row.talk_ended_at - row.talk_started_at - row.hold_s) for row in handled]),
        "hold_s": round(sum(row.hold_s for row in handled), 1),
        "held_calls": sum(row.hold_s > 0 for row in handled),
        "wrap_up_s": _mean([row.wrapup_ended_at - row.talk_ended_at for row in handled]),
        "dispositions": outcomes,
    }


def agent_figures(storage: Storage, since: float, now: float) -> list[dict[str, Any]]:
    """One row per agent with a state or a handled call in the window, by username."""
    times = state_times(storage.agent_states_since(since), since, now)
    handled: dict[str, list[DispositionRow]] = defaultdict(list)
    for row in storage.dispositions_since(since):
        handled[row.agent].append(row)
    figures = []
    for agent in sorted({*times, *handled}):
        spent = times.get(agent, {})
        busy = sum(spent.get(state, 0.0) for state in BUSY_STATES)
        available = sum(spent.get(state, 0.0) for state in AVAILABLE_STATES)
        figures.append(
            {
                "username": agent,
                **_call_figures(handled.get(agent, [])),
                "occupancy": _ratio(busy, available),
                "logged_in_s": round(sum(spent.values()), 1),
            }
        )
    return figures

"""Identification attempts per account across calls, and the lockout after too many failures.

A call allows ``policy.max_auth_attempts`` failed identifications; an attacker can place several
calls at once. So every attempt on an account counts wherever it comes from: after
``auth_lockout_failures`` of them within ``auth_lockout_window_s`` (failed, or still being checked)
the account's identification is refused, even with the right PIN, for ``auth_lockout_s``; a
success clears the count.

The policy lives here, where the flow's identification step runs (voicebot/dialogue/walk.py); where
the count is kept is the actions plugin's choice (:class:`AttemptStore`: the demo bank keeps it in
its SQLite database, so it survives a restart), else :class:`MemoryAttemptStore` in this process.
Stores see a hash of the account, never the number the caller gave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from voicebot.config import PolicyConfig
from voicebot.handoff.redact import account_key


@dataclass(frozen=True)
class AccountAttempts:
    """What is kept for one account: when each counted attempt was made, and the end of its lockout."""

    attempts: tuple[float, ...] = ()
    locked_until: float = 0.0
    forget_after: float = 0.0  # nothing in it matters after this time: a store may drop it then


Change = Callable[[AccountAttempts], AccountAttempts]


class AttemptStore(Protocol):
    """Where the counts live, shared by every call (and every thread running a dialogue)."""

    def change_attempts(self, account_key: str, change: Change, now: float) -> AccountAttempts:
        """Applies ``change`` to the account's record (an empty one when there is none) with no other
        change in between, keeps the result and returns it; records whose ``forget_after`` is before
        ``now`` may be dropped."""


class MemoryAttemptStore:
    """The counts in this process's memory: shared by its calls, lost on restart."""

    def __init__(self) -> None:
        self._records: dict[str, AccountAttempts] = {}
        self._lock = threading.Lock()
        self._sweep_at = 1024  # records are swept at this many, so memory stays within twice those alive

    def change_attempts(self, account_key: str, change: Change, now: float) -> AccountAttempts:
        with self._lock:
            record = change(self._records.get(account_key, AccountAttempts()))
            if record.forget_after > now:
                self._records[account_key] = record
            else:
                self._records.pop(account_key, None)
            if len(self._records) >= self._sweep_at:
                self._records = {key: kept for key, kept in self._records.items() if kept.forget_after > now}
                self._sweep_at = max(1024, 2 * len(self._records))
            return record


class IdentificationLockout:
    """The lockout policy over a store (see the module's docstring); ``now`` is Unix time."""

    def __init__(self, store: AttemptStore, policy: PolicyConfig) -> None:
        self.store = store
        self.failures = policy.auth_lockout_failures
        self.window_s = policy.auth_lockout_window_s
        self.lock_s = policy.auth_lockout_s

    def begin(self, account: str, now: float) -> float:
        """Counts an attempt before it is checked, so that parallel calls cannot all slip through while
        the PIN is hashed. Returns 0 when it may be checked, else the seconds the lockout has left (the
        attempt is refused, unchecked and uncounted)."""

        def count(record: AccountAttempts) -> AccountAttempts:
            record = self._recent(record, now)
            if record.locked_until > now:
                return record
            if len(record.attempts) >= self.failures:  # as many are being checked: this one waits
                return self._locked(now)
            return self._kept(replace(record, attempts=(*record.attempts, now)))

        record = self.store.change_attempts(account_key(account), count, now)
        return max(0.0, record.locked_until - now)

    def failed(self, account: str, now: float) -> float:
        """The attempt counted by :meth:`begin` failed. Returns the seconds of the lockout it started
        (it was the last one allowed), else 0."""

        def judge(record: AccountAttempts) -> AccountAttempts:
            record = self._recent(record, now)
            if record.locked_until <= now and len(record.attempts) >= self.failures:
                return self._locked(now)
            return record

        record = self.store.change_attempts(account_key(account), judge, now)
        return max(0.0, record.locked_until - now)

    def succeeded(self, account: str, now: float) -> None:
        """The right PIN: the account's count starts again."""
        self.store.change_attempts(account_key(account), lambda record: AccountAttempts(), now)

    def _recent(self, record: AccountAttempts, now: float) -> AccountAttempts:
        attempts = tuple(at for at in record.attempts if at > now - self.window_s)
        locked_until = record.locked_until if record.locked_until > now else 0.0
        return self._kept(replace(record, attempts=attempts, locked_until=locked_until))

    def _locked(self, now: float) -> AccountAttempts:
        # The attempts are spent: once the lockout ends the account has its full count again.
        return self._kept(AccountAttempts(locked_until=now + self.lock_s))

    def _kept(self, record: AccountAttempts) -> AccountAttempts:
        last = record.attempts[-1] + self.window_s if record.attempts else 0.0
        return replace(record, forget_after=max(last, record.locked_until))

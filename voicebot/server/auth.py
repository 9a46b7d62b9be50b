"""Agent accounts and web sessions: scrypt password hashes, session cookies, CSRF tokens, login
back-off and roles."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from voicebot.storage import AgentAccount

ROLES = ("agent", "supervisor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
SESSION_COOKIE = "voicebot_session"
SESSION_TTL_S = 12 * 3600


def hash_password(password: str, salt: bytes) -> bytes:
    # scrypt with n=2^14, r=8: ~16 MB and tens of ms per guess, the interactive-login setting.
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024)


def make_account(
    username: str,
    password: str,
    role: str,
    *,
    languages: Sequence[str] = ("en",),
    queues: Sequence[str] = (),
    ui_language: str = "en",
) -> AgentAccount:
    """A new account; ``languages`` are the callers' languages the agent speaks, ``queues`` the queues
    they serve (none: every queue), ``ui_language`` the language of their desk's labels."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username.isidentifier() or len(password) < 8:
        raise ValueError("username must be letters, digits or _; password at least 8 characters")
    if not languages:
        raise ValueError("an agent speaks at least one language")
    salt = secrets.token_bytes(16)
    return AgentAccount(
        username,
        hash_password(password, salt),
        salt,
        role,
        languages=tuple(dict.fromkeys(languages)),
        queues=tuple(dict.fromkeys(queues)),
        ui_language=ui_language,
    )


# What an unknown username is checked against: the same scrypt work as a real account, never a match.
_DUMMY_SALT = secrets.token_bytes(16)
_DUMMY_HASH = secrets.token_bytes(64)


def check_password(account: AgentAccount | None, password: str) -> bool:
    """Whether ``password`` is the account's; with no account (an unknown username) a dummy hash is
    computed all the same, so that the answer takes as long and names cannot be told apart by timing.
    It takes tens of milliseconds of CPU: call it off the event loop (``asyncio.to_thread``)."""
    salt, expected = (
        (account.salt, account.password_hash) if account is not None else (_DUMMY_SALT, _DUMMY_HASH)
    )
    matches = hmac.compare_digest(hash_password(password, salt), expected)
    return matches and account is not None


def verify_password(account: AgentAccount, password: str) -> bool:
    return check_password(account, password)


@dataclass(frozen=True)
class WebSession:
    token: str
    username: str
    role: str
    csrf_token: str
    expires_at: float

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]


class SessionStore:
    """Live web sessions, in memory: a restart logs everyone out (their desks reconnect to log in)."""

    def __init__(self) -> None:
        self._sessions: dict[str, WebSession] = {}

    def create(self, account: AgentAccount) -> WebSession:
        session = WebSession(
            secrets.token_urlsafe(32),
            account.username,
            account.role,
            secrets.token_urlsafe(32),
            time.time() + SESSION_TTL_S,
        )
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> WebSession | None:
        session = self._sessions.get(token or "")
        if session is None or session.expires_at < time.time():
            return None
        return session

    def end(self, token: str) -> None:
        self._sessions.pop(token, None)


@dataclass
class LoginLimiter:
    """Back-off of failed logins per (client address, username) pair, with a ceiling over all of them.

    A pair has ``free_failures`` failures within ``window_s``; after them its next attempt waits
    ``base_delay_s`` from the last failure, doubling with every further failure up to ``max_delay_s``.
    A success clears the pair. Other addresses trying that account, and other accounts behind that
    address (a reverse proxy, an office), are not slowed. Once ``ceiling`` failures in all fall within
    the window (guessing from many addresses), every attempt waits until the oldest ages out.

    An attempt is counted (``failed``) before its password is checked and uncounted if it succeeds, so
    that parallel guesses cannot all pass before the first is counted; attempts made to wait are
    neither checked nor counted, so memory stays within ``ceiling`` entries.
    """

    free_failures: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 900.0
    window_s: float = 900.0
    ceiling: int = 500
    _pairs: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    _all: deque[tuple[float, tuple[str, str]]] = field(default_factory=deque)

    @staticmethod
    def _pair(address: str, username: str) -> tuple[str, str]:
        return address, username[:64]

    def _expire(self, now: float) -> None:
        while self._all and self._all[0][0] <= now - self.window_s:
            when, pair = self._all.popleft()
            failures = self._pairs.get(pair)
            while failures and failures[0] <= when:
                failures.popleft()
            if failures is not None and not failures:
                del self._pairs[pair]

    def wait_s(self, address: str, username: str, now: float) -> float:
        """Seconds this address must wait before trying this username again; 0: it may try now."""
        self._expire(now)
        if len(self._all) >= self.ceiling:
            return self._all[0][0] + self.window_s - now
        failures = self._pairs.get(self._pair(address, username), ())
        if len(failures) < self.free_failures:
            return 0.0
        doublings = min(len(failures) - self.free_failures, 32)
        delay = min(self.base_delay_s * 2**doublings, self.max_delay_s)
        return max(0.0, failures[-1] + delay - now)

    def failed(self, address: str, username: str, now: float) -> None:
        """Counts a failure (or an attempt not yet checked: ``succeeded`` takes it back)."""
        pair = self._pair(address, username)
        self._pairs.setdefault(pair, deque()).append(now)
        self._all.append((now, pair))

    def succeeded(self, address: str, username: str) -> None:
        """Clears the pair's failures, and takes them out of the ceiling's count."""
        pair = self._pair(address, username)
        if self._pairs.pop(pair, None):
            self._all = deque(entry for entry in self._all if entry[1] != pair)

"""Agent accounts and web sessions: scrypt password hashes, session cookies, CSRF tokens, login
rate limiting and roles."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
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


def verify_password(account: AgentAccount, password: str) -> bool:
    return hmac.compare_digest(hash_password(password, account.salt), account.password_hash)


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
    """At most ``max_failures`` failed logins per client address and per username in ``window_s``."""

    max_failures: int = 5
    window_s: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] < now - self.window_s:
            failures.popleft()
        return failures

    def blocked(self, address: str, username: str, now: float) -> bool:
        keys = (f"ip:{address}", f"user:{username}")
        return any(len(self._recent(key, now)) >= self.max_failures for key in keys)

    def failed(self, address: str, username: str, now: float) -> None:
        for key in (f"ip:{address}", f"user:{username}"):
            self._recent(key, now).append(now)

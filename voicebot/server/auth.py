"""Agent accounts and web sessions: scrypt password hashes, session cookies, CSRF tokens, login
back-off and roles."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voicebot.storage import AgentAccount, Storage, WebSessionRow

ROLES = ("agent", "supervisor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
SESSION_COOKIE = "voicebot_session"
# A session's last-seen time is written at most this often (it counts for the idle timeout): a page
# that polls does not write the database on every request.
TOUCH_INTERVAL_S = 60.0


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
    time_zone: str | None = None,
) -> AgentAccount:
    """A new account; ``languages`` are the callers' languages the agent speaks, ``queues`` the queues
    they serve (none: every queue), ``ui_language`` the language of their desk's labels,
    ``time_zone`` (IANA, e.g. Europe/Madrid) the one their desk shows times in."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username.isidentifier() or len(password) < 8:
        raise ValueError("username must be letters, digits or _; password at least 8 characters")
    if not languages:
        raise ValueError("an agent speaks at least one language")
    if time_zone is not None:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{time_zone}' is not a time zone (e.g. Europe/Madrid, America/Mexico_City)"
            ) from None
    salt = secrets.token_bytes(16)
    return AgentAccount(
        username,
        hash_password(password, salt),
        salt,
        role,
        languages=tuple(dict.fromkeys(languages)),
        queues=tuple(dict.fromkeys(queues)),
        ui_language=ui_language,
        time_zone=time_zone,
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


def token_hash(token: str) -> str:
    """What storage keeps of a session token: its SHA-256 (the token is 32 random bytes, so a plain
    hash cannot be reversed by guessing). Cookie bytes that are not UTF-8 hash like any others."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class WebSession:
    token: str  # the cookie's value: only the browser holds it, storage keeps its hash
    username: str
    role: str
    expires_at: float

    @property
    def csrf_token(self) -> str:
        """Derived from the session token, so it is stored nowhere, cannot be made from the database's
        hash, and ends with the session."""
        key = self.token.encode("utf-8", "surrogateescape")
        return hmac.new(key, b"csrf", hashlib.sha256).hexdigest()

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]


class SessionStore:
    """Web sessions in storage, so that a restart signs nobody out. A session ends at logout, when it
    has not been seen for ``idle_timeout_s``, or ``lifetime_s`` after the login, whichever comes first;
    ended and expired ones are deleted (``purge`` deletes those nobody came back for)."""

    def __init__(
        self,
        storage: Storage,
        idle_timeout_s: float,
        lifetime_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.idle_timeout_s = idle_timeout_s
        self.lifetime_s = lifetime_s
        self.touch_interval_s = min(TOUCH_INTERVAL_S, idle_timeout_s / 4)  # seen well within the idle time
        self.clock = clock

    def create(self, account: AgentAccount) -> WebSession:
        self.purge()
        token, now = secrets.token_urlsafe(32), self.clock()
        expires_at = now + self.lifetime_s
        self.storage.save_web_session(
            WebSessionRow(token_hash(token), account.username, account.role, now, now, expires_at)
        )
        return WebSession(token, account.username, account.role, expires_at)

    def get(self, token: str | None) -> WebSession | None:
        """The live session of a cookie's token, marked as seen now; None when there is none."""
        if not token:
            return None
        now, key = self.clock(), token_hash(token)
        row = self.storage.get_web_session(key)
        if row is None:
            return None
        if now >= row.expires_at or now - row.last_seen_at >= self.idle_timeout_s:
            self.storage.end_web_session(key)
            return None
        if now - row.last_seen_at >= self.touch_interval_s:
            self.storage.touch_web_session(key, now)
        return WebSession(token, row.username, row.role, row.expires_at)

    def end(self, token: str) -> None:
        self.storage.end_web_session(token_hash(token))

    def purge(self) -> int:
        """Deletes the expired sessions; returns how many."""
        now = self.clock()
        return self.storage.purge_web_sessions(now, now - self.idle_timeout_s)


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


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (``compare_digest`` on str raises) and
    header bytes that are not UTF-8 (aiohttp hands them over as surrogate escapes)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


class SignedTokens:
    """Short-lived tokens that need no state: ``EXPIRES.SIGNATURE``, the expiry (Unix seconds) signed
    with HMAC-SHA256 under a key only this server holds, for one ``purpose``."""

    VALID, EXPIRED, BAD = "valid", "expired", "bad"

    def __init__(self, key: str, purpose: str) -> None:
        self._key = key.encode()
        self.purpose = purpose

    def issue(self, ttl_s: float, now: float) -> str:
        expires = str(int(now + ttl_s))
        return f"{expires}.{self._signature(expires)}"

    def check(self, token: str, now: float) -> str:
        """VALID, EXPIRED (signed by us, but too late) or BAD (anything else)."""
        expires, _, signature = token.partition(".")
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return self.BAD
        if not same_secret(signature, self._signature(expires)):
            return self.BAD
        return self.VALID if int(expires) > now else self.EXPIRED

    def _signature(self, expires: str) -> str:
        mac = hmac.new(self._key, f"{self.purpose}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

"""Agents: their names, Argon2id passwords, logins (rate-limited) and sessions.

A password is kept only as libsodium's Argon2id string (``nacl.pwhash.argon2id.str``: salt and
cost inside), checked off the event loop, at most :data:`PASSWORD_CHECKS` at once (each takes
64 MiB); a login for an unknown name spends the same work on a dummy hash, so the answer's
timing does not say which names exist. Attempts are limited per client address and, separately,
per agent name (token buckets, forgotten only once full again: trying many other names or
addresses never resets a limit). A login makes a session: a random cookie token (stored hashed,
:mod:`.store`) and a random CSRF token for the session's forms; it ends at logout, after
``session_idle_seconds`` unused or ``session_max_seconds`` after the login, and when the
agent's password changes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import nacl.exceptions
import nacl.pwhash
import trio

from shared.rate_limits import TokenBuckets

from ..core.errors import ClientError
from .config import PASSWORD_COST, InboxConfig
from .store import AgentSession, InboxStore

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
_AGENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
TOKEN_BYTES = 32
TOUCH_SECONDS = 30.0
"""A session's last use is written at most this often (not on every request)."""
PASSWORD_CHECKS = 2
"""Argon2id computations (64 MiB each) run at once; more logins wait their turn."""


def check_agent_name(name: str) -> str:
    """``name`` if it is a valid agent name (1-32 lowercase letters, digits, ``_ . -``)."""
    if not _AGENT_NAME.fullmatch(name):
        raise ClientError(f"invalid agent name {name[:40]!r}: use 1-32 lowercase letters, "
                          "digits, '_', '.' or '-', starting with a letter or digit")
    return name


def hash_password(password: str, cost: tuple[int, int] = PASSWORD_COST) -> bytes:
    """The Argon2id string of a new agent password (:class:`ClientError` if too short)."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ClientError(f"an agent password has {MIN_PASSWORD_CHARS} to "
                          f"{MAX_PASSWORD_CHARS} characters")
    opslimit, memlimit = cost
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=opslimit, memlimit=memlimit)


def password_matches(stored: bytes, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from."""
    try:
        return bool(nacl.pwhash.verify(stored, password.encode()))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError):
        return False


@dataclass(frozen=True, slots=True)
class Login:
    """A session made by a login: the cookie's token and the session's CSRF token."""

    agent: str
    token: str
    csrf: str


class LoginRefused(Exception):
    """A login failed: wrong name or password, or too many attempts (``limited``)."""

    def __init__(self, message: str, limited: bool = False) -> None:
        super().__init__(message)
        self.limited = limited


class Agents:
    """Logins and sessions over the store's ``agents`` and ``agent_sessions`` tables."""

    def __init__(self, store: InboxStore, config: InboxConfig,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._by_address = TokenBuckets[str](config.login_rate_per_second, config.login_burst)
        self._by_name = TokenBuckets[str](config.login_rate_per_second, config.login_burst)
        self._password_checks = trio.CapacityLimiter(PASSWORD_CHECKS)
        self._dummy: bytes | None = None

    async def log_in(self, name: str, password: str, address: str) -> Login:
        """A new session for ``name`` if ``password`` is theirs; :class:`LoginRefused` if not,
        or when the address or the name has no attempts left."""
        if not (self._by_address.take(address) and self._by_name.take(name[:64])):
            raise LoginRefused("too many login attempts; wait a minute", limited=True)
        stored = self.store.password_hash(name) if _AGENT_NAME.fullmatch(name) else None
        if stored is None:
            if self._dummy is None:
                self._dummy = await trio.to_thread.run_sync(
                    hash_password, "x" * 16, limiter=self._password_checks)
            stored, name = self._dummy, ""
        password = password[:MAX_PASSWORD_CHARS]
        matches = await trio.to_thread.run_sync(password_matches, stored, password,
                                                limiter=self._password_checks)
        if not matches or not name:
            raise LoginRefused("wrong agent name or password")
        login = Login(name, secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES))
        self.store.add_session(login.token, name, login.csrf, self.clock())
        return login

    def session(self, token: str) -> AgentSession | None:
        """The live session a cookie names (its use recorded), or None once it is over."""
        now = self.clock()
        self.store.end_stale_sessions(now - self.config.session_idle_seconds,
                                      now - self.config.session_max_seconds)
        found = self.store.session(token)
        if found is not None and now - found.seen_at >= TOUCH_SECONDS:
            self.store.touch_session(token, now)
        return found

    def log_out(self, token: str) -> None:
        """End the session: its cookie opens nothing any more."""
        self.store.end_session(token)

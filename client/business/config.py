"""The inbox's limits and settings, in one dataclass (units in the names)."""

from __future__ import annotations

from dataclasses import dataclass

import nacl.pwhash

PASSWORD_COST = (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                 nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
"""Argon2id cost of a new agent password (about 0.1 s and 64 MiB); a stored hash keeps its own."""


@dataclass(frozen=True, slots=True)
class InboxConfig:
    """Every bound and switch of the web inbox."""

    secure_cookies: bool = False
    """Cookies marked ``Secure`` (and the session cookie ``__Host-`` prefixed): set with TLS."""
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    """Host names a request may name in its ``Host`` header; any other is refused (400)."""
    session_idle_seconds: float = 8 * 3600
    """A session unused this long is over."""
    session_max_seconds: float = 24 * 3600
    """A session is over this long after the login, used or not."""
    login_rate_per_second: float = 1 / 12
    """Login attempts a client address (and, separately, an agent name) regains a second."""
    login_burst: int = 5
    """Login attempts a client address (or an agent name) may make at once."""
    max_form_bytes: int = 64 * 1024
    """The largest form body taken (a reply, a login); a larger one is refused (413)."""
    max_reply_chars: int = 4096
    """The longest reply an agent may send."""
    thread_messages: int = 500
    """Messages of a conversation shown (the newest)."""
    list_conversations: int = 500
    """Conversations shown in the list (the newest)."""
    max_event_streams: int = 64
    """Live-update streams served at once; more are refused (503)."""
    keepalive_seconds: float = 15.0
    """Seconds between comments on an idle live-update stream (and session re-checks)."""
    content_security_policy: str = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    """Sent with every page: no inline script, nothing from elsewhere."""

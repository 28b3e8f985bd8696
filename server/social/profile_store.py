"""Profiles and status updates on the social server: the :class:`SocialProfileStore`
interface (``SocialStore.profiles``) and its SQLite form, in the social server's database.

On this transport they are server-side (as the rest of its content): per account a display
name, an about text and an avatar (a blob announced by its ``media`` fields, which the server
can read: any logged-in account may download an avatar), and status updates, each kept for 24
hours and at most 30 per account; an account sees the status updates of the accounts it shares a
conversation with. Every method that changes state commits before it returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from e2e_proto.address import is_valid_account
from e2e_proto.constants import MAX_STATUSES, STATUS_TTL_MS
from storage.sqlite import immediate_transaction

from ..common.store_base import storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    account TEXT PRIMARY KEY, name TEXT NOT NULL, about TEXT NOT NULL, avatar BLOB,
    avatar_blob BLOB);
CREATE INDEX IF NOT EXISTS profiles_by_avatar ON profiles (avatar_blob);
CREATE TABLE IF NOT EXISTS statuses (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, text TEXT NOT NULL,
    posted_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS statuses_by_account ON statuses (account, posted_ms);
"""


class StoredProfile(NamedTuple):
    """An account's profile; ``avatar`` is its avatar's ``media`` fields, msgpack-encoded."""

    name: str
    about: str
    avatar: bytes | None


class StoredStatus(NamedTuple):
    """One status update of an account."""

    account: str
    text: str
    posted_ms: int


class SocialProfileStore(Protocol):
    """What the social server keeps of profiles and status updates."""

    def profile(self, account: str) -> StoredProfile | None:
        """The account's profile, if it set one."""
        ...

    def set_profile(self, account: str, profile: StoredProfile, avatar_blob: bytes | None
                    ) -> None:
        """Replace the account's profile (``avatar_blob``: the blob its avatar announces)."""
        ...

    def is_avatar(self, blob_id: bytes) -> bool:
        """Whether ``blob_id`` is some account's avatar (every account may download it)."""
        ...

    def add_status(self, status: StoredStatus) -> None:
        """Keep a status update (only the newest 30 of the account stay)."""
        ...

    def statuses(self, accounts: Sequence[str], now_ms: int) -> list[StoredStatus]:
        """The live status updates of ``accounts``, newest first; expired ones are deleted."""
        ...

    def contacts(self, account: str) -> list[str]:
        """The accounts that share a conversation with ``account`` (whose status updates it
        sees), itself included."""
        ...


class SqliteSocialProfiles:
    """:class:`SocialProfileStore` in the social server's SQLite file."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    @storage
    def profile(self, account: str) -> StoredProfile | None:
        """The account's profile, if it set one."""
        row = self._db.execute("SELECT name, about, avatar FROM profiles WHERE account = ?",
                               (account,)).fetchone()
        return None if row is None else StoredProfile(*row)

    @storage
    def set_profile(self, account: str, profile: StoredProfile, avatar_blob: bytes | None
                    ) -> None:
        """Replace the account's profile."""
        self._db.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?)",
                         (account, *profile, avatar_blob))

    @storage
    def is_avatar(self, blob_id: bytes) -> bool:
        """Whether ``blob_id`` is some account's avatar."""
        return self._db.execute("SELECT 1 FROM profiles WHERE avatar_blob = ?",
                                (blob_id,)).fetchone() is not None

    @storage
    def add_status(self, status: StoredStatus) -> None:
        """Keep a status update (the newest 30 of the account stay)."""
        with immediate_transaction(self._db) as db:
            db.execute("INSERT INTO statuses (account, text, posted_ms) VALUES (?, ?, ?)",
                       status)
            db.execute("DELETE FROM statuses WHERE account = ? AND id NOT IN (SELECT id FROM "
                       "statuses WHERE account = ? ORDER BY posted_ms DESC, id DESC LIMIT ?)",
                       (status.account, status.account, MAX_STATUSES))

    @storage
    def statuses(self, accounts: Sequence[str], now_ms: int) -> list[StoredStatus]:
        """The live status updates of ``accounts``, newest first."""
        with immediate_transaction(self._db) as db:
            db.execute("DELETE FROM statuses WHERE posted_ms <= ?", (now_ms - STATUS_TTL_MS,))
        found: list[StoredStatus] = []
        for account in accounts:
            found += [StoredStatus(*row) for row in self._db.execute(
                "SELECT account, text, posted_ms FROM statuses WHERE account = ? AND "
                "posted_ms <= ? ORDER BY posted_ms DESC", (account, now_ms + STATUS_TTL_MS))]
        return sorted(found, key=lambda s: s.posted_ms, reverse=True)

    @storage
    def contacts(self, account: str) -> list[str]:
        """The accounts sharing a conversation with ``account``, itself included."""
        rows = self._db.execute(
            "SELECT DISTINCT other.account FROM members AS mine JOIN members AS other "
            "ON mine.conversation = other.conversation WHERE mine.account = ?", (account,))
        return sorted({account, *(row[0] for row in rows if is_valid_account(row[0]))})

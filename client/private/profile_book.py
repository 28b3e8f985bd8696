"""The profiles and status updates a private device knows: its own and its contacts'.

They arrive end to end encrypted (payloads ``profile`` and ``status``) and are kept here, in the
device's state file, beside the messages: per account the newest profile version only, and the
status updates not yet expired (expired ones are deleted when the list is read). With a
passphrase the texts are sealed like message texts (:data:`SEALED_PROFILE_COLUMNS`). An
avatar is a file record (:mod:`client.core.files`) named by the profile payload's id.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, NamedTuple

from e2e_proto.constants import MAX_STATUSES, STATUS_TTL_MS
from e2e_proto.profiles import Profile, ProfileUpdate, StatusUpdate

from ..core.sealed_columns import SealedColumn, seal_text, unseal_text

if TYPE_CHECKING:
    from ..core.protocol_store import SqliteProtocolStore

PROFILE_NAME = SealedColumn("profiles", "account", "name")
PROFILE_ABOUT = SealedColumn("profiles", "account", "about")
STATUS_TEXT = SealedColumn("statuses", "id", "text")
SEALED_PROFILE_COLUMNS = (PROFILE_NAME, PROFILE_ABOUT, STATUS_TEXT)
"""The text columns sealed at rest with a passphrase."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    account TEXT PRIMARY KEY, name TEXT NOT NULL, about TEXT NOT NULL,
    version INTEGER NOT NULL, avatar TEXT);
CREATE TABLE IF NOT EXISTS statuses (
    id BLOB PRIMARY KEY, account TEXT NOT NULL, text TEXT NOT NULL, posted_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS statuses_by_account ON statuses (account, posted_ms);
"""
"""The book's tables (part of the private client's schema)."""


class KnownProfile(NamedTuple):
    """An account's newest known profile; ``avatar`` names its file record, if any."""

    account: str
    profile: Profile
    version: int
    avatar: str | None


class KnownStatus(NamedTuple):
    """A status update of an account, with the id of the payload that carried it."""

    id: bytes
    account: str
    status: StatusUpdate


class ProfileBook:
    """The ``profiles`` and ``statuses`` tables of a private device's state."""

    def __init__(self, protocol: SqliteProtocolStore) -> None:
        self._protocol = protocol
        self._db: sqlite3.Connection = protocol.connection

    def profile(self, account: str) -> KnownProfile | None:
        """The newest profile known for ``account``."""
        row = self._db.execute("SELECT name, about, version, avatar FROM profiles "
                               "WHERE account = ?", (account,)).fetchone()
        if row is None:
            return None
        name = unseal_text(self._protocol, PROFILE_NAME, account, row[0]) or ""
        about = unseal_text(self._protocol, PROFILE_ABOUT, account, row[1]) or ""
        return KnownProfile(account, Profile(name, about), int(row[2]), row[3])

    def keep_profile(self, account: str, update: ProfileUpdate, avatar: str | None) -> bool:
        """Keep ``update`` as ``account``'s profile unless a newer or equal version is known
        (in the caller's transaction); whether it was kept."""
        known = self.profile(account)
        if known is not None and known.version >= update.version:
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?)",
            (account, seal_text(self._protocol, PROFILE_NAME, account, update.profile.name),
             seal_text(self._protocol, PROFILE_ABOUT, account, update.profile.about),
             update.version, avatar))
        return True

    def add_status(self, status_id: bytes, account: str, status: StatusUpdate) -> bool:
        """Keep a status update (in the caller's transaction); False when known already.

        At most :data:`~e2e_proto.constants.MAX_STATUSES` are kept per account: the oldest go.
        """
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO statuses VALUES (?, ?, ?, ?)",
            (status_id, account, seal_text(self._protocol, STATUS_TEXT, status_id, status.text),
             status.posted_ms))
        self._db.execute(
            "DELETE FROM statuses WHERE account = ? AND id NOT IN (SELECT id FROM statuses "
            "WHERE account = ? ORDER BY posted_ms DESC, id LIMIT ?)",
            (account, account, MAX_STATUSES))
        return cursor.rowcount == 1

    def live_statuses(self, now_ms: int, account: str | None = None) -> list[KnownStatus]:
        """The status updates still shown at ``now_ms`` (of ``account``, or of everyone),
        newest first; expired ones are deleted."""
        with self._protocol.transaction():
            self._db.execute("DELETE FROM statuses WHERE posted_ms <= ?",
                             (now_ms - STATUS_TTL_MS,))
        query = "SELECT id, account, text, posted_ms FROM statuses"
        rows = (self._db.execute(query + " WHERE account = ? ORDER BY posted_ms DESC, id",
                                 (account,)) if account is not None
                else self._db.execute(query + " ORDER BY posted_ms DESC, id"))
        statuses = [KnownStatus(row[0], row[1], StatusUpdate(
            str(unseal_text(self._protocol, STATUS_TEXT, row[0], row[2])), row[3]))
            for row in rows.fetchall()]
        return [s for s in statuses if s.status.live_at(now_ms)]

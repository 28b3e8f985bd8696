"""What the social server keeps for the other transport, in its own database (its own tables):
the :class:`SocialFederationStore` interface (``SocialStore.federation``) and its SQLite form.

* Cross identities: per account that made one, its cross identity key, the cross device list
  it signed (with each device's link signature) and whether the account takes cross-transport
  chats; and the link signatures of devices asking to join, until the list names them.
* Account links: the live link of a social account (the statement and both signatures), the
  shared record last received for it, and the ids of ended links (never accepted again).
  Ending a link deletes the link and the record for good (:func:`storage.sqlite.secure_deletion`:
  overwritten in the file, the WAL truncated), and so does replacing a record.

Cross-transport messages are not kept here: they are the social store's own secret
conversations (envelopes only) with a member of the other transport.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import msgpack

from storage.sqlite import immediate_transaction, secure_deletion

from ..common.store_base import storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS cross_identities (
    account TEXT PRIMARY KEY, identity_key BLOB NOT NULL, list_version INTEGER NOT NULL,
    list_body BLOB NOT NULL, list_signature BLOB NOT NULL, link_signatures BLOB NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS cross_joins (
    account TEXT NOT NULL, device INTEGER NOT NULL, identity_key BLOB NOT NULL,
    signature BLOB NOT NULL, PRIMARY KEY (account, device));
CREATE TABLE IF NOT EXISTS linked_accounts (
    social_account TEXT PRIMARY KEY, link_id BLOB NOT NULL UNIQUE, private_account TEXT NOT NULL,
    body BLOB NOT NULL, private_signature BLOB NOT NULL, social_signature BLOB NOT NULL,
    linked_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shared_records (
    social_account TEXT PRIMARY KEY, record BLOB NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ended_links (link_id BLOB PRIMARY KEY);
"""


class StaleCrossListError(Exception):
    """A cross device list not newer than the stored one under the same identity key."""


class LinkTakenError(Exception):
    """The social account is linked already, or the link id was used before."""


@dataclass(frozen=True, slots=True)
class CrossIdentity:
    """An account's cross identity key and its signed cross device list."""

    account: str
    identity_key: bytes
    list_version: int
    list_body: bytes
    list_signature: bytes
    link_signatures: dict[int, bytes]
    enabled: bool


class CrossJoin(NamedTuple):
    """A device asking to join its account's cross identity: its key and link signature."""

    device_id: int
    identity_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SocialLink:
    """A live account link as the social server checked and keeps it."""

    social_account: str
    link_id: bytes
    private_account: str
    body: bytes
    private_signature: bytes
    social_signature: bytes
    linked_at: float


class SocialFederationStore(Protocol):
    """What the social server keeps for the other transport."""

    def cross_identity(self, account: str) -> CrossIdentity | None:
        """The account's cross identity, if it made one."""
        ...

    def put_cross_identity(self, identity: CrossIdentity) -> None:
        """Store a (checked) cross identity; the same key needs a newer list version
        (:class:`StaleCrossListError`), a new key replaces the old one. Join requests of the
        devices it lists are dropped; ``enabled`` is kept as it was."""
        ...

    def set_cross_enabled(self, account: str, enabled: bool) -> bool:
        """Opt in or out; False when the account has no cross identity."""
        ...

    def add_cross_join(self, account: str, join: CrossJoin) -> None:
        """Keep a device's (checked) request to join the account's cross identity."""
        ...

    def cross_joins(self, account: str) -> list[CrossJoin]:
        """The account's devices waiting to join."""
        ...

    def live_link(self, social_account: str) -> SocialLink | None:
        """The account's live link."""
        ...

    def add_link(self, link: SocialLink) -> None:
        """Keep a (checked) live link; :class:`LinkTakenError`."""
        ...

    def end_link(self, social_account: str, link_id: bytes) -> bool:
        """Delete the live link ``link_id`` and its shared record for good; False when it is
        not the account's live link."""
        ...

    def put_shared_record(self, link_id: bytes, record: bytes, now: float) -> bool:
        """Keep the record shared through the live link ``link_id`` (replacing the previous
        one for good); False when no live link has that id."""
        ...

    def shared_record(self, social_account: str) -> tuple[bytes, float] | None:
        """The record last shared with the account and when it arrived."""
        ...


class SqliteSocialFederation:
    """:class:`SocialFederationStore` in the social server's SQLite file."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    @storage
    def cross_identity(self, account: str) -> CrossIdentity | None:
        """The account's cross identity, if it made one."""
        row = self._db.execute(
            "SELECT account, identity_key, list_version, list_body, list_signature, "
            "link_signatures, enabled FROM cross_identities WHERE account = ?",
            (account,)).fetchone()
        if row is None:
            return None
        return CrossIdentity(*row[:5], {d: s for d, s in msgpack.unpackb(row[5])},
                             bool(row[6]))

    @storage
    def put_cross_identity(self, identity: CrossIdentity) -> None:
        """Store a checked cross identity (see the interface)."""
        with immediate_transaction(self._db) as db:
            row = db.execute("SELECT identity_key, list_version, enabled FROM cross_identities "
                             "WHERE account = ?", (identity.account,)).fetchone()
            if row is not None and row[0] == identity.identity_key and (
                    row[1] >= identity.list_version):
                raise StaleCrossListError(identity.account)
            enabled = int(row[2]) if row is not None else 0
            db.execute("INSERT OR REPLACE INTO cross_identities VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (identity.account, identity.identity_key, identity.list_version,
                        identity.list_body, identity.list_signature,
                        msgpack.packb(sorted(identity.link_signatures.items())), enabled))
            db.executemany("DELETE FROM cross_joins WHERE account = ? AND device = ?",
                           [(identity.account, d) for d in identity.link_signatures])

    @storage
    def set_cross_enabled(self, account: str, enabled: bool) -> bool:
        """Opt in or out."""
        return self._db.execute("UPDATE cross_identities SET enabled = ? WHERE account = ?",
                                (int(enabled), account)).rowcount == 1

    @storage
    def add_cross_join(self, account: str, join: CrossJoin) -> None:
        """Keep a device's request to join."""
        self._db.execute("INSERT OR REPLACE INTO cross_joins VALUES (?, ?, ?, ?)",
                         (account, *join))

    @storage
    def cross_joins(self, account: str) -> list[CrossJoin]:
        """The account's devices waiting to join."""
        return [CrossJoin(*row) for row in self._db.execute(
            "SELECT device, identity_key, signature FROM cross_joins WHERE account = ? "
            "ORDER BY device", (account,))]

    @storage
    def live_link(self, social_account: str) -> SocialLink | None:
        """The account's live link."""
        row = self._db.execute(
            "SELECT social_account, link_id, private_account, body, private_signature, "
            "social_signature, linked_at FROM linked_accounts WHERE social_account = ?",
            (social_account,)).fetchone()
        return None if row is None else SocialLink(*row)

    @storage
    def add_link(self, link: SocialLink) -> None:
        """Keep a live link."""
        with immediate_transaction(self._db) as db:
            if db.execute("SELECT 1 FROM ended_links WHERE link_id = ?",
                          (link.link_id,)).fetchone() is not None:
                raise LinkTakenError(link.social_account)
            try:
                db.execute("INSERT INTO linked_accounts VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (link.social_account, link.link_id, link.private_account, link.body,
                            link.private_signature, link.social_signature, link.linked_at))
            except sqlite3.IntegrityError:
                raise LinkTakenError(link.social_account) from None

    @storage
    def end_link(self, social_account: str, link_id: bytes) -> bool:
        """Delete the live link and its shared record for good."""
        with secure_deletion(self._db), immediate_transaction(self._db) as db:
            if db.execute("DELETE FROM linked_accounts WHERE social_account = ? AND link_id = ?",
                          (social_account, link_id)).rowcount == 0:
                return False
            db.execute("DELETE FROM shared_records WHERE social_account = ?", (social_account,))
            db.execute("INSERT OR IGNORE INTO ended_links VALUES (?)", (link_id,))
        return True

    @storage
    def put_shared_record(self, link_id: bytes, record: bytes, now: float) -> bool:
        """Keep the record shared through the live link ``link_id``."""
        with secure_deletion(self._db), immediate_transaction(self._db) as db:
            row = db.execute("SELECT social_account FROM linked_accounts WHERE link_id = ?",
                             (link_id,)).fetchone()
            if row is None:
                return False
            db.execute("INSERT OR REPLACE INTO shared_records VALUES (?, ?, ?)",
                       (row[0], record, now))
        return True

    @storage
    def shared_record(self, social_account: str) -> tuple[bytes, float] | None:
        """The record last shared with the account and when it arrived."""
        row = self._db.execute("SELECT record, received_at FROM shared_records "
                               "WHERE social_account = ?", (social_account,)).fetchone()
        return None if row is None else (row[0], row[1])

"""What the relay keeps for the other transport: the :class:`RelayFederationStore` interface
(``RelayStore.federation``) and its SQLite implementation, in the relay's own database.

Five things, no more: each account's account links (the live one and the revoked ones, whose
ids are never accepted again), its sharing log (what the social server received and when), the
items waiting to go to the social server (shares and revocations, in order), and whether the
account takes cross-transport chats; besides, who hands the queued items over now (one holder
at a time, so that relay nodes sharing one store hand them over in order and once). No message,
envelope or key is kept here: cross-transport envelopes pass through the relay's normal
mailboxes. The interface is asynchronous, as :class:`~server.relay.store.RelayStore` is. Every
method that changes state has made it durable before it returns; a shared record that is
replaced, delivered or revoked is overwritten in the file
(:func:`storage.sqlite.secure_deletion`). The Redis store implements the same methods
(:mod:`server.relay.redis_federation`); ``tests/test_relay_store.py`` runs one contract against
both.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from e2e_proto.account_link import LinkStatement
from storage.sqlite import immediate_transaction, secure_deletion

from ..common.store_base import storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS account_links (
    link_id BLOB PRIMARY KEY, account TEXT NOT NULL, body BLOB NOT NULL,
    private_signature BLOB NOT NULL, social_signature BLOB NOT NULL, linked_at REAL NOT NULL,
    revoked_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS live_link_by_account ON account_links (account)
    WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS sharing_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, at REAL NOT NULL,
    kind TEXT NOT NULL, link_id BLOB NOT NULL, summary TEXT NOT NULL, record BLOB);
CREATE INDEX IF NOT EXISTS sharing_log_by_account ON sharing_log (account, seq);
CREATE TABLE IF NOT EXISTS peer_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, kind TEXT NOT NULL,
    link_id BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cross_accounts (account TEXT PRIMARY KEY);
"""

SHARE = "share"
UNLINK = "unlink"


class LinkTakenError(Exception):
    """The account has a live link already, or the link id was used before."""


@dataclass(frozen=True, slots=True)
class StoredLink:
    """An account link as the relay checked and keeps it."""

    link_id: bytes
    account: str
    body: bytes
    private_signature: bytes
    social_signature: bytes
    linked_at: float

    @property
    def statement(self) -> LinkStatement:
        """The statement (checked when it was stored)."""
        return LinkStatement.decode(self.body)


class SharingEntry(NamedTuple):
    """One line of an account's sharing log: when, what happened (``linked``, ``shared``,
    ``unlinked``, ``deleted``), for which link, a summary without content, and the shared
    record itself (None once the link is revoked)."""

    at: float
    kind: str
    link_id: bytes
    summary: str
    record: bytes | None


class PeerItem(NamedTuple):
    """Something waiting to go to the social server: a ``share`` (a shared record) or an
    ``unlink`` (a signed revocation), in the order queued."""

    seq: int
    account: str
    kind: str
    link_id: bytes
    body: bytes


class RelayFederationStore(Protocol):
    """What the relay keeps for the other transport.

    A store that cannot be reached or written raises
    :class:`~server.common.store_base.StoreUnavailableError` and has changed nothing.
    """

    async def live_link(self, account: str) -> StoredLink | None:
        """The account's live link, if any."""
        ...

    async def add_link(self, link: StoredLink, entry: SharingEntry) -> None:
        """Store a new live link and log ``entry``; :class:`LinkTakenError` when the account
        has a live link or the link id was ever used."""
        ...

    async def revoke_link(self, account: str, link_id: bytes, now: float, entry: SharingEntry,
                          item: tuple[str, bytes]) -> bool:
        """End the live link ``link_id`` of ``account`` at ``now``: drop its queued shares,
        queue ``item`` (kind, body) for the social server, log ``entry`` and forget the
        contents of the records it shared (summaries stay). False (nothing changed) when it
        is not the account's live link."""
        ...

    async def queue_for_peer(self, account: str, kind: str, link_id: bytes, body: bytes) -> None:
        """Queue an item for the social server; a ``share`` replaces a queued share of the
        same link (only the newest record matters)."""
        ...

    async def peer_items(self, limit: int) -> list[PeerItem]:
        """The oldest ``limit`` queued items."""
        ...

    async def peer_item_done(self, seq: int, entry: SharingEntry | None) -> None:
        """Remove a delivered item and log ``entry`` (if any), in one commit."""
        ...

    async def sharing_log(self, account: str, limit: int) -> list[SharingEntry]:
        """The account's newest ``limit`` log entries, oldest first."""
        ...

    async def set_cross_enabled(self, account: str, enabled: bool) -> None:
        """Whether ``account`` takes (and may start) cross-transport chats."""
        ...

    async def cross_enabled(self, account: str) -> bool:
        """Whether ``account`` opted in to cross-transport chats."""
        ...

    async def claim_hand_over(self, holder: bytes, ttl: float) -> bool:
        """Whether ``holder`` may hand queued items to the social server for the next ``ttl``
        seconds: True (and its claim renewed) unless another holder's claim is live."""
        ...

    async def release_hand_over(self, holder: bytes) -> None:
        """End ``holder``'s claim (another holder's is left alone)."""
        ...


class SqliteRelayFederation:
    """:class:`RelayFederationStore` in the relay's SQLite file (its own tables); the hand-over
    claim in memory (one relay process uses the file)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)
        self._claim: tuple[bytes, float] | None = None  # holder, until (time.monotonic)

    @storage
    async def live_link(self, account: str) -> StoredLink | None:
        """The account's live link, if any."""
        row = self._db.execute(
            "SELECT link_id, account, body, private_signature, social_signature, linked_at "
            "FROM account_links WHERE account = ? AND revoked_at IS NULL", (account,)).fetchone()
        return None if row is None else StoredLink(*row)

    @storage
    async def add_link(self, link: StoredLink, entry: SharingEntry) -> None:
        """Store a new live link and log ``entry``."""
        with immediate_transaction(self._db) as db:
            try:
                db.execute("INSERT INTO account_links VALUES (?, ?, ?, ?, ?, ?, NULL)",
                           (link.link_id, link.account, link.body, link.private_signature,
                            link.social_signature, link.linked_at))
            except sqlite3.IntegrityError:
                raise LinkTakenError(link.account) from None
            self._log(db, link.account, entry)

    @storage
    async def revoke_link(self, account: str, link_id: bytes, now: float, entry: SharingEntry,
                          item: tuple[str, bytes]) -> bool:
        """End the live link; queue ``item``, log ``entry``, forget shared contents."""
        with secure_deletion(self._db), immediate_transaction(self._db) as db:
            if db.execute("UPDATE account_links SET revoked_at = ? WHERE account = ? AND "
                          "link_id = ? AND revoked_at IS NULL",
                          (now, account, link_id)).rowcount == 0:
                return False
            db.execute("DELETE FROM peer_outbox WHERE link_id = ? AND kind = ?", (link_id, SHARE))
            db.execute("INSERT INTO peer_outbox (account, kind, link_id, body) VALUES (?, ?, ?, ?)",
                       (account, item[0], link_id, item[1]))
            db.execute("UPDATE sharing_log SET record = NULL WHERE link_id = ?", (link_id,))
            self._log(db, account, entry)
        return True

    @storage
    async def queue_for_peer(self, account: str, kind: str, link_id: bytes, body: bytes) -> None:
        """Queue an item; a share replaces a queued share of the same link."""
        with secure_deletion(self._db), immediate_transaction(self._db) as db:
            if kind == SHARE:
                db.execute("DELETE FROM peer_outbox WHERE link_id = ? AND kind = ?",
                           (link_id, SHARE))
            db.execute("INSERT INTO peer_outbox (account, kind, link_id, body) VALUES (?, ?, ?, ?)",
                       (account, kind, link_id, body))

    @storage
    async def peer_items(self, limit: int) -> list[PeerItem]:
        """The oldest ``limit`` queued items."""
        return [PeerItem(*row) for row in self._db.execute(
            "SELECT seq, account, kind, link_id, body FROM peer_outbox ORDER BY seq LIMIT ?",
            (limit,))]

    @storage
    async def peer_item_done(self, seq: int, entry: SharingEntry | None) -> None:
        """Remove a delivered item and log ``entry``."""
        with secure_deletion(self._db), immediate_transaction(self._db) as db:
            row = db.execute("SELECT account FROM peer_outbox WHERE seq = ?", (seq,)).fetchone()
            db.execute("DELETE FROM peer_outbox WHERE seq = ?", (seq,))
            if row is not None and entry is not None:
                self._log(db, row[0], entry)

    @storage
    async def sharing_log(self, account: str, limit: int) -> list[SharingEntry]:
        """The account's newest ``limit`` log entries, oldest first."""
        rows = self._db.execute(
            "SELECT at, kind, link_id, summary, record FROM sharing_log WHERE account = ? "
            "ORDER BY seq DESC LIMIT ?", (account, limit)).fetchall()
        return [SharingEntry(*row) for row in reversed(rows)]

    @storage
    async def set_cross_enabled(self, account: str, enabled: bool) -> None:
        """Whether ``account`` takes cross-transport chats."""
        if enabled:
            self._db.execute("INSERT OR IGNORE INTO cross_accounts VALUES (?)", (account,))
        else:
            self._db.execute("DELETE FROM cross_accounts WHERE account = ?", (account,))

    @storage
    async def cross_enabled(self, account: str) -> bool:
        """Whether ``account`` opted in."""
        return self._db.execute("SELECT 1 FROM cross_accounts WHERE account = ?",
                                (account,)).fetchone() is not None

    async def claim_hand_over(self, holder: bytes, ttl: float) -> bool:
        """Whether ``holder`` may hand queued items over for the next ``ttl`` seconds."""
        now = time.monotonic()
        if self._claim is not None and self._claim[0] != holder and self._claim[1] > now:
            return False
        self._claim = holder, now + ttl
        return True

    async def release_hand_over(self, holder: bytes) -> None:
        """End ``holder``'s claim."""
        if self._claim is not None and self._claim[0] == holder:
            self._claim = None

    @staticmethod
    def _log(db: sqlite3.Connection, account: str, entry: SharingEntry) -> None:
        db.execute("INSERT INTO sharing_log (account, at, kind, link_id, summary, record) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (account, *entry))

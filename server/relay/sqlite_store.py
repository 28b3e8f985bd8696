"""The relay's SQLite store: :class:`~server.relay.store.RelayStore` in one file (the default).

Every method that changes state commits before it returns: a send is acknowledged only once it
is on disk. Mailbox writes that arrive together share one commit (:mod:`.group_commit`); each
device's usage (messages and envelope bytes) is kept by triggers, so a quota check costs no
scan, and an envelope is recognised in its mailbox by a unique digest (a retried send is stored
once). Pending links live in memory: they wait on a connection of this one process and end with
it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections import Counter
from collections.abc import Sequence
from itertools import compress
from pathlib import Path

import msgpack

from storage.sqlite import add_missing_column, immediate_transaction, open_private_database

from ..common.blob_index import SqliteBlobIndex
from ..common.store_base import Bundle, storage, take_bundle
from ..federation.relay_store import SqliteRelayFederation
from .config import RelayConfig
from .group_commit import GroupCommit
from .limits import MemoryRelayLimits
from .store import (
    ACCOUNT_CACHE_SIZE,
    LINK_IN_USE,
    LINKS_OF_ACCOUNT,
    AccountRecord,
    Acknowledge,
    BlobGoneError,
    Delivery,
    DeviceGoneError,
    DeviceInfo,
    Enqueue,
    Enqueued,
    GroupLimitError,
    GroupRoute,
    MailboxWrite,
    NameTakenError,
    NewDevice,
    Outgoing,
    PendingLink,
    PrekeyLimitError,
    QuotaExceededError,
    Skipped,
    StaleGroupError,
    StaleListError,
)

DIGEST_SIZE = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY, account_key BLOB NOT NULL, list_version INTEGER NOT NULL,
    list_body BLOB NOT NULL, list_signature BLOB NOT NULL,
    max_device_id INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS devices (
    account TEXT NOT NULL REFERENCES accounts(account), device INTEGER NOT NULL,
    identity_key BLOB NOT NULL,
    spk_id INTEGER, spk BLOB, spk_signature BLOB,
    name TEXT NOT NULL DEFAULT '', linked_at REAL NOT NULL DEFAULT 0, last_seen REAL,
    mail_count INTEGER NOT NULL DEFAULT 0, mail_bytes INTEGER NOT NULL DEFAULT 0,
    link_signature BLOB, PRIMARY KEY (account, device));
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    account TEXT NOT NULL, device INTEGER NOT NULL, id INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (account, device, id));
CREATE TABLE IF NOT EXISTS mailbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, device INTEGER NOT NULL,
    sender TEXT NOT NULL, sender_device INTEGER NOT NULL, stored_at REAL NOT NULL,
    envelope BLOB NOT NULL, digest BLOB);
CREATE INDEX IF NOT EXISTS mailbox_by_device ON mailbox (account, device, seq);
CREATE INDEX IF NOT EXISTS mailbox_by_age ON mailbox (stored_at);
CREATE TABLE IF NOT EXISTS groups (
    group_id BLOB PRIMARY KEY, version INTEGER NOT NULL, members BLOB NOT NULL,
    admins BLOB NOT NULL, body BLOB NOT NULL, signature BLOB NOT NULL, creator TEXT);
"""
# After the migration: a file made before ``creator`` gains the column first.
_GROUPS_BY_CREATOR = "CREATE INDEX IF NOT EXISTS groups_by_creator ON groups (creator)"
GROUP_CACHE_SIZE = 10_000


class SqliteRelayBlobs(SqliteBlobIndex):
    """:class:`~server.relay.store.RelayBlobIndex`: the ``blobs`` table and ``blob_grants``,
    one row per (blob, device) it was sent to, with whether that device fetched it (written by
    the mailbox write that stores the message: :func:`_grant`)."""

    schema = SqliteBlobIndex.schema + """
CREATE TABLE IF NOT EXISTS blob_grants (
    blob_id BLOB NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL,
    fetched INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (blob_id, account, device));
"""

    @storage
    async def may_download(self, blob_id: bytes, account: str, device_id: int) -> bool:
        """Whether the blob was granted to that device."""
        return self._db.execute("SELECT 1 FROM blob_grants WHERE blob_id = ? AND account = ? "
                                "AND device = ?", (blob_id, account, device_id)
                                ).fetchone() is not None

    def first_missing(self, blob_ids: Sequence[bytes]) -> bytes | None:
        """The first of ``blob_ids`` that has no record (in the caller's transaction: the one
        that stores the send announcing them), or None."""
        for blob_id in blob_ids:
            if self._db.execute("SELECT 1 FROM blobs WHERE blob_id = ?",
                                (blob_id,)).fetchone() is None:
                return blob_id
        return None

    @storage
    async def mark_fetched(self, blob_id: bytes, account: str, device_id: int) -> bool | None:
        """Record that the device has the blob; whether every granted device has it now."""
        with immediate_transaction(self._db) as db:
            if db.execute("UPDATE blob_grants SET fetched = 1 WHERE blob_id = ? AND account = ? "
                          "AND device = ?", (blob_id, account, device_id)).rowcount == 0:
                return None
            return db.execute("SELECT 1 FROM blob_grants WHERE blob_id = ? AND fetched = 0",
                              (blob_id,)).fetchone() is None

    def _forget(self, db: sqlite3.Connection, blob_ids: Sequence[bytes]) -> None:
        super()._forget(db, blob_ids)
        db.executemany("DELETE FROM blob_grants WHERE blob_id = ?", [(b,) for b in blob_ids])


def _grant(db: sqlite3.Connection, blob_ids: Sequence[bytes], stored: Sequence[Outgoing]
           ) -> None:
    """Let the recipient of each ``stored`` message download each blob (in the caller's
    transaction: the one that stores the messages)."""
    db.executemany("INSERT OR IGNORE INTO blob_grants (blob_id, account, device) "
                   "VALUES (?, ?, ?)",
                   [(b, m.account, m.device_id) for b in blob_ids for m in stored])


# A device's mail_count and mail_bytes are its mailbox's size, kept by these triggers in the
# transaction of every insert and delete (send, ack, expiry, unlinking): the quota check reads
# them in the transaction that inserts, so it cannot be raced, and costs no scan.
_USAGE_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS mailbox_stored AFTER INSERT ON mailbox BEGIN
    UPDATE devices SET mail_count = mail_count + 1,
                       mail_bytes = mail_bytes + length(NEW.envelope)
    WHERE account = NEW.account AND device = NEW.device;
END;
CREATE TRIGGER IF NOT EXISTS mailbox_deleted AFTER DELETE ON mailbox BEGIN
    UPDATE devices SET mail_count = mail_count - 1,
                       mail_bytes = mail_bytes - length(OLD.envelope)
    WHERE account = OLD.account AND device = OLD.device;
END;
"""
_DIGEST_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS mailbox_digest_unique "
                 "ON mailbox (account, device, digest)")


def _digest(envelope: bytes) -> bytes:
    """An envelope's name in its mailbox: a byte-identical envelope is the same message (a
    128-bit BLAKE2b, so two different envelopes never share one)."""
    return hashlib.blake2b(envelope, digest_size=DIGEST_SIZE).digest()


class SqliteRelayStore:
    """:class:`RelayStore` in one SQLite file (WAL, synchronous=FULL, mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_private_database(self.path)
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._db.executescript(_USAGE_TRIGGERS)
        self.blobs = SqliteRelayBlobs(self._db)
        self.federation = SqliteRelayFederation(self._db)
        self._accounts: dict[str, AccountRecord] = {}  # read on every request: kept decoded
        self._groups: dict[bytes, GroupRoute] = {}  # read on every group send: kept decoded
        self._links: dict[bytes, PendingLink] = {}
        self._links_of: Counter[str] = Counter()  # pending links per account
        self.group_commit: GroupCommit[MailboxWrite, Skipped | None] = GroupCommit(
            self._commit_round)

    def _migrate(self) -> None:
        """Bring a database made by an earlier version up to this schema."""
        add_missing_column(self._db, "devices", "link_signature BLOB")
        add_missing_column(self._db, "mailbox", "digest BLOB")  # older mail has none
        self._db.execute(_DIGEST_INDEX)
        add_missing_column(self._db, "groups", "creator TEXT")  # older copies count for no one
        self._db.execute(_GROUPS_BY_CREATOR)
        with self._transaction() as db:  # the byte quota's usage columns: count what is stored
            add_missing_column(db, "devices", "mail_count INTEGER NOT NULL DEFAULT 0")
            if add_missing_column(db, "devices", "mail_bytes INTEGER NOT NULL DEFAULT 0"):
                db.execute("UPDATE devices SET (mail_count, mail_bytes) = (SELECT COUNT(*), "
                           "COALESCE(SUM(length(envelope)), 0) FROM mailbox m "
                           "WHERE m.account = devices.account AND m.device = devices.device)")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def limits(self, config: RelayConfig) -> MemoryRelayLimits:
        """The users' limits, in memory: the relay is the one process on an SQLite file."""
        return MemoryRelayLimits(config)

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    @storage
    async def create_account(self, account: str, account_key: bytes, list_version: int,
                             list_body: bytes, list_signature: bytes,
                             devices: dict[int, bytes], now: float) -> None:
        """Register a new account; :class:`NameTakenError` if the name exists."""
        with self._transaction() as db:
            try:
                db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)",
                           (account, account_key, list_version, list_body, list_signature,
                            max(devices)))
            except sqlite3.IntegrityError:
                raise NameTakenError(account) from None
            self._accounts.pop(account, None)
            db.executemany("INSERT INTO devices (account, device, identity_key, name, linked_at) "
                           "VALUES (?, ?, ?, 'primary', ?)",
                           [(account, i, key, now) for i, key in devices.items()])

    @storage
    async def account(self, account: str) -> AccountRecord | None:
        """The account's key and device list (cached; every change goes through this store)."""
        cached = self._accounts.get(account)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT account_key, list_version, list_body, list_signature, "
                               "max_device_id FROM accounts WHERE account = ?",
                               (account,)).fetchone()
        if row is None:
            return None
        devices = dict(self._db.execute(
            "SELECT device, identity_key FROM devices WHERE account = ? ORDER BY device",
            (account,)).fetchall())
        if len(self._accounts) >= ACCOUNT_CACHE_SIZE:
            self._accounts.clear()
        record = self._accounts[account] = AccountRecord(account, row[0], row[1], row[2], row[3],
                                                         devices, row[4])
        return record

    @storage
    async def replace_device_list(self, account: str, list_version: int, list_body: bytes,
                                  list_signature: bytes, devices: dict[int, bytes],
                                  added: Sequence[NewDevice], now: float) -> list[int]:
        """Store a newer device list (and its new devices); returns removed device ids."""
        with self._transaction() as db:
            row = db.execute("SELECT list_version FROM accounts WHERE account = ?",
                             (account,)).fetchone()
            if row is None or row[0] >= list_version:
                raise StaleListError(account)
            self._accounts.pop(account, None)
            current = dict(db.execute("SELECT device, identity_key FROM devices "
                                      "WHERE account = ?", (account,)).fetchall())
            removed = sorted(i for i in current if devices.get(i) != current[i])
            for device_id in removed:
                for table in ("devices", "one_time_prekeys", "mailbox"):
                    db.execute(f"DELETE FROM {table} WHERE account = ? AND device = ?",
                               (account, device_id))
            db.execute("UPDATE accounts SET list_version = ?, list_body = ?, list_signature = ?, "
                       "max_device_id = MAX(max_device_id, ?) WHERE account = ?",
                       (list_version, list_body, list_signature, max(devices), account))
            for new in added:
                db.execute("INSERT INTO devices (account, device, identity_key, spk_id, spk, "
                           "spk_signature, name, linked_at, link_signature) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (account, new.device_id, new.identity_key, *new.signed_prekey,
                            new.name, now, new.link_signature))
                db.executemany("INSERT OR REPLACE INTO one_time_prekeys VALUES (?, ?, ?, ?)",
                               [(account, new.device_id, i, k) for i, k in new.one_time_prekeys])
        return removed

    @storage
    async def device_info(self, account: str) -> list[DeviceInfo]:
        """Name, link time and last authentication of each device of ``account``."""
        return [DeviceInfo(*row) for row in self._db.execute(
            "SELECT device, name, linked_at, last_seen FROM devices WHERE account = ? "
            "ORDER BY device", (account,))]

    @storage
    async def link_signatures(self, account: str) -> dict[int, bytes]:
        """The link signature of each linked device of ``account`` that has one stored."""
        return dict(self._db.execute(
            "SELECT device, link_signature FROM devices WHERE account = ? AND device != 0 "
            "AND link_signature IS NOT NULL", (account,)).fetchall())

    @storage
    async def set_link_signature(self, account: str, device_id: int, signature: bytes
                                 ) -> None:
        """Store a linked device's (checked) link signature."""
        self._db.execute("UPDATE devices SET link_signature = ? WHERE account = ? AND device = ?",
                         (signature, account, device_id))

    @storage
    async def touch(self, account: str, device_id: int, now: float) -> None:
        """Record that a device authenticated at ``now``."""
        self._db.execute("UPDATE devices SET last_seen = ? WHERE account = ? AND device = ?",
                         (now, account, device_id))

    @storage
    async def store_prekeys(self, account: str, device_id: int,
                            signed: tuple[int, bytes, bytes] | None,
                            one_time: Sequence[tuple[int, bytes]], *, limit: int) -> int:
        """Set the signed prekey (if given) and add one-time prekeys, unless that would pass
        ``limit`` (:class:`PrekeyLimitError`, counted in the transaction that writes); returns
        the OPK count."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM devices WHERE account = ? AND device = ?",
                          (account, device_id)).fetchone() is None:
                return 0  # removed from its account meanwhile
            held = self._one_time_prekey_count(account, device_id)
            if held + len(one_time) > limit:
                raise PrekeyLimitError(held, limit)
            if signed is not None:
                db.execute("UPDATE devices SET spk_id = ?, spk = ?, spk_signature = ? "
                           "WHERE account = ? AND device = ?", (*signed, account, device_id))
            db.executemany("INSERT OR REPLACE INTO one_time_prekeys VALUES (?, ?, ?, ?)",
                           [(account, device_id, i, key) for i, key in one_time])
            return self._one_time_prekey_count(account, device_id)

    @storage
    async def one_time_prekey_count(self, account: str, device_id: int) -> int:
        """How many one-time prekeys the relay holds for the device."""
        return self._one_time_prekey_count(account, device_id)

    def _one_time_prekey_count(self, account: str, device_id: int) -> int:
        return self._db.execute("SELECT COUNT(*) FROM one_time_prekeys "
                                "WHERE account = ? AND device = ?",
                                (account, device_id)).fetchone()[0]

    @storage
    async def take_bundle(self, account: str, device_id: int, one_time: bool = True
                          ) -> tuple[Bundle, int] | None:
        """The device's bundle with one OPK (none when not ``one_time``), which is deleted in
        the same transaction, and how many OPKs it has left."""
        with self._transaction() as db:
            bundle = take_bundle(db, account, device_id, one_time)
            if bundle is None:
                return None
            return bundle, self._one_time_prekey_count(account, device_id)

    async def enqueue(self, write: Enqueue) -> Enqueued:
        """Store one send durably (in the next group commit), all or nothing (with
        ``skip_full``: all that fit); the messages left out (no seqs: they are global here,
        not contiguous per device)."""
        return Enqueued(await self.group_commit.run(write) or ())

    async def acknowledge(self, write: Acknowledge) -> None:
        """Delete a device's messages (in the next group commit)."""
        await self.group_commit.run(write)

    async def _commit_round(self, writes: Sequence[MailboxWrite]
                            ) -> list[Skipped | Exception | None]:
        return self.write_mailboxes(writes)

    @storage
    def write_mailboxes(self, writes: Sequence[MailboxWrite]
                        ) -> list[Skipped | Exception | None]:
        """Apply many sends and acknowledgements in one transaction: one fsync for all. Per
        write: None (applied whole), the error that refused it (nothing applied), or the
        positions of the messages a ``skip_full`` write left out."""
        results: list[Skipped | Exception | None] = []
        with self._transaction() as db:
            for write in writes:
                if isinstance(write, Acknowledge):
                    db.executemany(
                        "DELETE FROM mailbox WHERE account = ? AND device = ? AND seq = ?",
                        [(write.account, write.device_id, seq) for seq in write.seqs])
                    results.append(None)
                    continue
                gone = self.blobs.first_missing(write.blobs)
                if gone is not None:
                    results.append(BlobGoneError(gone))
                    continue
                messages = write.messages
                skipped: Skipped = ()
                if write.skip_full:
                    fits = [self._refusal(db, m, write) is None for m in messages]
                    skipped = tuple(i for i, fit in enumerate(fits) if not fit)
                    messages = list(compress(messages, fits))
                else:
                    full = next((r for m in messages
                                 if (r := self._refusal(db, m, write)) is not None), None)
                    if full is not None:
                        results.append(full)
                        continue
                db.executemany(  # a message stored already is ignored (the unique digest)
                    "INSERT OR IGNORE INTO mailbox (account, device, sender, sender_device, "
                    "stored_at, envelope, digest) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(m.account, m.device_id, *write.sender, write.now, m.envelope,
                      _digest(m.envelope)) for m in messages])
                if write.blobs:
                    _grant(db, write.blobs, messages)
                results.append(skipped or None)
        return results

    @staticmethod
    def _refusal(db: sqlite3.Connection, message: Outgoing, write: Enqueue
                 ) -> QuotaExceededError | DeviceGoneError | None:
        """Why ``message`` of ``write`` cannot be stored now: a mailbox it would take over its
        quota (of messages or bytes), unless the message is in it already, or a device unlinked
        meanwhile. The usage counters answer; the message itself is looked for only in a full
        mailbox."""
        address = (message.account, message.device_id)
        usage = db.execute("SELECT mail_count, mail_bytes FROM devices "
                           "WHERE account = ? AND device = ?", address).fetchone()
        if usage is None:
            return DeviceGoneError(*address)
        count, size = usage
        if count >= write.quota:
            limit = f"{write.quota} messages"
        elif size + len(message.envelope) > write.quota_bytes:
            limit = f"{write.quota_bytes} bytes"
        else:
            return None
        if db.execute("SELECT 1 FROM mailbox WHERE account = ? AND device = ? AND digest = ?",
                      (*address, _digest(message.envelope))).fetchone() is not None:
            return None  # a retry of a stored send: ignored by the insert
        return QuotaExceededError(*address, limit)

    @storage
    async def pending(self, account: str, device_id: int, after_seq: int, limit: int
                      ) -> list[Delivery]:
        """Stored messages for the device with seq > ``after_seq``, oldest first."""
        return [Delivery(*row) for row in self._db.execute(
            "SELECT seq, envelope FROM mailbox WHERE account = ? AND device = ? AND seq > ? "
            "ORDER BY seq LIMIT ?", (account, device_id, after_seq, limit))]

    @storage
    async def expire(self, older_than: float) -> int:
        """Delete messages stored before ``older_than``; returns how many."""
        with self._transaction() as db:
            return db.execute("DELETE FROM mailbox WHERE stored_at < ?", (older_than,)).rowcount

    @storage
    async def group(self, group_id: bytes) -> GroupRoute | None:
        """The routing copy of a group (cached; every change goes through this store)."""
        cached = self._groups.get(group_id)
        if cached is not None:
            return cached
        row = self._db.execute("SELECT version, members, admins, body, signature FROM groups "
                               "WHERE group_id = ?", (group_id,)).fetchone()
        if row is None:
            return None
        if len(self._groups) >= GROUP_CACHE_SIZE:
            self._groups.clear()
        route = self._groups[group_id] = GroupRoute(
            group_id, row[0], tuple(msgpack.unpackb(row[1])), tuple(msgpack.unpackb(row[2])),
            row[3], row[4])
        return route

    @storage
    async def put_group(self, route: GroupRoute, account: str, limit: int) -> None:
        """Store a routing copy (:class:`StaleGroupError` unless its version is newer); a new
        one counts for ``account`` (:class:`GroupLimitError` past ``limit``), one with no
        members deletes the stored copy. Counted in the transaction that writes."""
        with self._transaction() as db:
            row = db.execute("SELECT version FROM groups WHERE group_id = ?",
                             (route.group_id,)).fetchone()
            if row is not None and row[0] >= route.version:
                raise StaleGroupError(route.group_id.hex())
            self._groups.pop(route.group_id, None)
            if not route.members:
                db.execute("DELETE FROM groups WHERE group_id = ?", (route.group_id,))
                return
            fields = (route.version, msgpack.packb(list(route.members)),
                      msgpack.packb(list(route.admins)), route.body, route.signature)
            if row is not None:
                db.execute("UPDATE groups SET version = ?, members = ?, admins = ?, body = ?, "
                           "signature = ? WHERE group_id = ?", (*fields, route.group_id))
                return
            if db.execute("SELECT COUNT(*) FROM groups WHERE creator = ?",
                          (account,)).fetchone()[0] >= limit:
                raise GroupLimitError(account, limit)
            db.execute("INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (route.group_id, *fields, account))

    async def offer_link(self, lookup: bytes, link: PendingLink, ttl: float,
                         per_account: int) -> str | None:
        """File a pending link (in memory: its connection is in this process and withdraws it
        when it ends, at the latest after ``ttl``)."""
        if lookup in self._links:
            return LINK_IN_USE
        if self._links_of[link.account] >= per_account:
            return LINKS_OF_ACCOUNT
        self._links[lookup] = link
        self._links_of[link.account] += 1
        return None

    async def pending_link(self, lookup: bytes) -> PendingLink | None:
        """The pending link filed under ``lookup``."""
        return self._links.get(lookup)

    async def take_link(self, lookup: bytes) -> PendingLink | None:
        """Remove and return the pending link filed under ``lookup``."""
        link = self._links.pop(lookup, None)
        if link is not None:
            self._links_of[link.account] -= 1
            if not self._links_of[link.account]:
                del self._links_of[link.account]
        return link

    async def withdraw_link(self, lookup: bytes, waiter: bytes) -> None:
        """Remove the pending link under ``lookup`` if ``waiter`` made it."""
        link = self._links.get(lookup)
        if link is not None and link.waiter == waiter:
            await self.take_link(lookup)

"""The social server's SQLite store: :class:`~server.social.store.SocialStore` in one file.

``social.db`` (WAL, ``synchronous=FULL``, mode 0600), separate from the relay's. Full-text search
is an FTS5 table over plaintext messages only; secret-conversation messages are stored as one
envelope per recipient device and never indexed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

from storage.sqlite import immediate_transaction, open_private_database

from ..common.blob_index import SqliteBlobIndex
from ..common.store_base import Bundle, storage, take_bundle
from ..federation.social_store import SqliteSocialFederation
from .profile_store import SqliteSocialProfiles
from .store import (
    DIRECT,
    GROUP,
    ClientIdReusedError,
    Conversation,
    Device,
    DeviceInfo,
    DeviceKeys,
    Event,
    KeyChangedError,
    Message,
    NameTakenError,
    NoPrekeysError,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, password_hash BLOB NOT NULL, created REAL NOT NULL,
    next_device INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS devices (
    account TEXT NOT NULL REFERENCES accounts(name), device INTEGER NOT NULL,
    token_hash BLOB NOT NULL UNIQUE, expires REAL NOT NULL, cursor INTEGER NOT NULL,
    identity_key BLOB, spk_id INTEGER, spk BLOB, spk_signature BLOB,
    created REAL, last_seen REAL,
    PRIMARY KEY (account, device));
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    account TEXT NOT NULL, device INTEGER NOT NULL, id INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (account, device, id));
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT UNIQUE, pair TEXT UNIQUE,
    secret INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS members (
    conversation INTEGER NOT NULL REFERENCES conversations(id), account TEXT NOT NULL,
    PRIMARY KEY (conversation, account));
CREATE INDEX IF NOT EXISTS members_by_account ON members (account, conversation);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, conversation INTEGER NOT NULL,
    sender TEXT NOT NULL, device INTEGER NOT NULL, ts INTEGER NOT NULL, text TEXT,
    secret INTEGER NOT NULL, client_id BLOB);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation, id);

CREATE TABLE IF NOT EXISTS envelopes (
    message INTEGER NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL,
    envelope BLOB NOT NULL, PRIMARY KEY (message, account, device));
CREATE TABLE IF NOT EXISTS reactions (
    message INTEGER NOT NULL, account TEXT NOT NULL, emoji TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (message, account));
CREATE TABLE IF NOT EXISTS pins (
    message INTEGER PRIMARY KEY, conversation INTEGER NOT NULL, account TEXT NOT NULL,
    ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS pins_by_conversation ON pins (conversation, message);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, conversation INTEGER NOT NULL, kind TEXT NOT NULL,
    message INTEGER, account TEXT NOT NULL, device INTEGER NOT NULL, ts INTEGER NOT NULL,
    emoji TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS message_text USING fts5 (text);
CREATE TABLE IF NOT EXISTS message_media (message INTEGER PRIMARY KEY, media BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS message_blobs (
    message INTEGER NOT NULL, blob_id BLOB NOT NULL, PRIMARY KEY (message, blob_id));
CREATE INDEX IF NOT EXISTS message_blobs_by_blob ON message_blobs (blob_id);
"""

_MESSAGE_COLUMNS = "id, conversation, sender, device, ts, text, secret"


def _message(row: tuple) -> Message:
    return Message(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))


def fts_query(text: str) -> str:
    """``text`` as an FTS5 query that matches every word literally (no query syntax).

    Each word becomes an FTS5 string (``"`` doubled inside). NUL, which FTS5 cannot parse
    inside a string, separates words like white space.
    """
    return " ".join('"' + word.replace('"', '""') + '"'
                    for word in text.replace("\x00", " ").split())


class SqliteSocialStore:
    """:class:`SocialStore` in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db = open_private_database(self.path)
        self._db.executescript(_SCHEMA)
        self._migrate()
        self.blobs = SqliteBlobIndex(self._db)
        self.profiles = SqliteSocialProfiles(self._db)
        self.federation = SqliteSocialFederation(self._db)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

    def _migrate(self) -> None:
        """Bring a database made by an earlier version up to this schema."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "client_id" not in columns:  # added with send's idempotency key
            self._db.execute("ALTER TABLE messages ADD COLUMN client_id BLOB")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id "
                         "ON messages (sender, client_id) WHERE client_id IS NOT NULL")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(devices)")}
        for column in ("created", "last_seen"):  # added with the device list (unknown: NULL)
            if column not in columns:
                self._db.execute(f"ALTER TABLE devices ADD COLUMN {column} REAL")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _log(self, db: sqlite3.Connection, conversation: int, kind: str, message: int | None,
             account: str, device_id: int, ts: int, emoji: str | None = None) -> None:
        db.execute("INSERT INTO events (conversation, kind, message, account, device, ts, emoji)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (conversation, kind, message, account, device_id, ts, emoji))

    # -- accounts and devices -----------------------------------------------------------------

    @storage
    def create_account(self, name: str, password_hash: bytes, now: float) -> None:
        """Create an account; :class:`NameTakenError` when an account or group has the name."""
        with self._transaction() as db:
            if (db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
                    or db.execute("SELECT 1 FROM conversations WHERE name = ?",
                                  (name,)).fetchone()):
                raise NameTakenError(name)
            db.execute("INSERT INTO accounts (name, password_hash, created) VALUES (?, ?, ?)",
                       (name, password_hash, now))

    @storage
    def password_hash(self, name: str) -> bytes | None:
        """The stored Argon2id hash of ``name``'s password, None for an unknown account."""
        row = self._db.execute("SELECT password_hash FROM accounts WHERE name = ?",
                               (name,)).fetchone()
        return None if row is None else row[0]

    @storage
    def account_exists(self, name: str) -> bool:
        """Whether an account named ``name`` exists."""
        return self._db.execute("SELECT 1 FROM accounts WHERE name = ?",
                                (name,)).fetchone() is not None

    @storage
    def add_device(self, account: str, token_hash: bytes, expires: float, now: float) -> int:
        """A new device of ``account`` with this token, created (and seen) ``now``; its cursor
        starts at the log's end."""
        with self._transaction() as db:
            (device_id,) = db.execute("SELECT next_device FROM accounts WHERE name = ?",
                                      (account,)).fetchone()
            db.execute("UPDATE accounts SET next_device = next_device + 1 WHERE name = ?",
                       (account,))
            (end,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
            db.execute("INSERT INTO devices (account, device, token_hash, expires, cursor, "
                       "created, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (account, device_id, token_hash, expires, end, now, now))
        return int(device_id)

    @storage
    def device_by_token(self, token_hash: bytes) -> Device | None:
        """The device logged in with this token (hash), expired or not."""
        row = self._db.execute("SELECT account, device, expires FROM devices "
                               "WHERE token_hash = ?", (token_hash,)).fetchone()
        return None if row is None else Device(*row)

    @storage
    def touch_device(self, account: str, device_id: int, now: float) -> None:
        """Record that a device logged in (with its token) at ``now``."""
        self._db.execute("UPDATE devices SET last_seen = ? WHERE account = ? AND device = ?",
                         (now, account, device_id))

    @storage
    def device_info(self, account: str) -> list[DeviceInfo]:
        """Every device of ``account``: id, creation, last login and token expiry."""
        return [DeviceInfo(*row) for row in self._db.execute(
            "SELECT device, created, last_seen, expires FROM devices WHERE account = ? "
            "ORDER BY device", (account,))]

    @storage
    def remove_device(self, account: str, device_id: int) -> bool:
        """Revoke a device: its token, keys and envelopes are deleted (its id is never used
        again); False when ``account`` has no such device."""
        with self._transaction() as db:
            for table in ("devices", "one_time_prekeys", "envelopes"):
                removed = db.execute(f"DELETE FROM {table} WHERE account = ? AND device = ?",
                                     (account, device_id)).rowcount
                if table == "devices" and not removed:
                    return False
        return True

    @storage
    def devices(self, account: str) -> list[DeviceKeys]:
        """Every logged-in device of ``account`` and the identity key it published."""
        return [DeviceKeys(*row) for row in self._db.execute(
            "SELECT device, identity_key FROM devices WHERE account = ? ORDER BY device",
            (account,))]

    @storage
    def publish_prekeys(self, account: str, device_id: int, identity_key: bytes,
                        signed_prekey: tuple[int, bytes, bytes] | None,
                        one_time_prekeys: Sequence[tuple[int, bytes]]) -> int:
        """Keep a device's keys; :class:`KeyChangedError` for a second, different identity."""
        with self._transaction() as db:
            (known,) = db.execute("SELECT identity_key FROM devices WHERE account = ? AND "
                                  "device = ?", (account, device_id)).fetchone()
            if known is not None and known != identity_key:
                raise KeyChangedError(f"{account}.{device_id}")
            db.execute("UPDATE devices SET identity_key = ? WHERE account = ? AND device = ?",
                       (identity_key, account, device_id))
            if signed_prekey is not None:
                db.execute("UPDATE devices SET spk_id = ?, spk = ?, spk_signature = ? "
                           "WHERE account = ? AND device = ?",
                           (*signed_prekey, account, device_id))
            db.executemany("INSERT OR REPLACE INTO one_time_prekeys VALUES (?, ?, ?, ?)",
                           [(account, device_id, i, key) for i, key in one_time_prekeys])
            (count,) = db.execute("SELECT COUNT(*) FROM one_time_prekeys WHERE account = ? "
                                  "AND device = ?", (account, device_id)).fetchone()
        return int(count)

    @storage
    def take_bundles(self, account: str, device_ids: Sequence[int],
                     one_time: Collection[int]) -> list[Bundle]:
        """The devices' bundles, each one-time prekey handed out (deleted) once; only the
        devices in ``one_time`` get one.

        :class:`NoPrekeysError` (and nothing deleted) when one of them has no signed prekey.
        """
        bundles = []
        with self._transaction() as db:
            for device_id in device_ids:
                bundle = take_bundle(db, account, device_id, device_id in one_time)
                if bundle is None:
                    raise NoPrekeysError(device_id)
                bundles.append(bundle)
        return bundles

    # -- conversations ------------------------------------------------------------------------

    def _conversation(self, row: tuple | None) -> Conversation | None:
        if row is None:
            return None
        conversation_id, kind, name, secret = row
        members = tuple(r[0] for r in self._db.execute(
            "SELECT account FROM members WHERE conversation = ? ORDER BY account",
            (conversation_id,)))
        return Conversation(conversation_id, kind, name, members, bool(secret))

    @storage
    def direct(self, a: str, b: str, create: bool) -> Conversation:
        """The one-to-one conversation of ``a`` and ``b`` (made when ``create``)."""
        pair = "\n".join(sorted((a, b)))
        query = "SELECT id, kind, name, secret FROM conversations WHERE pair = ?"
        found = self._conversation(self._db.execute(query, (pair,)).fetchone())
        if found is not None or not create:
            return found or Conversation(None, DIRECT, None, tuple(sorted({a, b})))
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO conversations (kind, pair) VALUES (?, ?)",
                                (DIRECT, pair))
            db.executemany("INSERT INTO members VALUES (?, ?)",
                           [(cursor.lastrowid, m) for m in sorted({a, b})])
        found = self._conversation(self._db.execute(query, (pair,)).fetchone())
        assert found is not None
        return found

    @storage
    def group(self, name: str) -> Conversation | None:
        """The group named ``name``."""
        return self._conversation(self._db.execute(
            "SELECT id, kind, name, secret FROM conversations WHERE name = ?",
            (name,)).fetchone())

    @storage
    def conversation(self, conversation_id: int) -> Conversation | None:
        """A conversation by id."""
        return self._conversation(self._db.execute(
            "SELECT id, kind, name, secret FROM conversations WHERE id = ?",
            (conversation_id,)).fetchone())

    @storage
    def create_group(self, name: str, members: Sequence[str], creator: str, device_id: int,
                     ts: int) -> Conversation:
        """A new group; :class:`NameTakenError` when an account or group has the name."""
        with self._transaction() as db:
            if (db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
                    or db.execute("SELECT 1 FROM conversations WHERE name = ?",
                                  (name,)).fetchone()):
                raise NameTakenError(name)
            cursor = db.execute("INSERT INTO conversations (kind, name) VALUES (?, ?)",
                                (GROUP, name))
            conversation_id = cursor.lastrowid
            assert conversation_id is not None
            db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)",
                           [(conversation_id, m) for m in members])
            self._log(db, conversation_id, "group", None, creator, device_id, ts)
        found = self.conversation(conversation_id)
        assert found is not None
        return found

    @storage
    def add_members(self, conversation_id: int, members: Sequence[str], account: str,
                    device_id: int, ts: int) -> Conversation:
        """Add members to a group."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)",
                           [(conversation_id, m) for m in members])
            self._log(db, conversation_id, "group", None, account, device_id, ts)
        found = self.conversation(conversation_id)
        assert found is not None
        return found

    @storage
    def remove_member(self, conversation_id: int, member: str, account: str, device_id: int,
                      ts: int) -> Conversation:
        """Remove ``member`` from a group (``account`` did it; itself when leaving)."""
        with self._transaction() as db:
            self._log(db, conversation_id, "group", None, account, device_id, ts)
            db.execute("DELETE FROM members WHERE conversation = ? AND account = ?",
                       (conversation_id, member))
        found = self.conversation(conversation_id)
        assert found is not None
        return found

    @storage
    def rename_group(self, conversation_id: int, name: str, account: str, device_id: int,
                     ts: int) -> Conversation:
        """Rename a group; :class:`NameTakenError` when an account or group has the name."""
        with self._transaction() as db:
            if (db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone()
                    or db.execute("SELECT 1 FROM conversations WHERE name = ?",
                                  (name,)).fetchone()):
                raise NameTakenError(name)
            db.execute("UPDATE conversations SET name = ? WHERE id = ?", (name, conversation_id))
            self._log(db, conversation_id, "group", None, account, device_id, ts)
        found = self.conversation(conversation_id)
        assert found is not None
        return found

    @storage
    def set_secret(self, conversation_id: int, account: str, device_id: int, ts: int) -> None:
        """Switch a conversation to end-to-end encrypted mode, for good."""
        with self._transaction() as db:
            db.execute("UPDATE conversations SET secret = 1 WHERE id = ?", (conversation_id,))
            self._log(db, conversation_id, "secret", None, account, device_id, ts)

    # -- messages -----------------------------------------------------------------------------

    @storage
    def add_message(self, conversation_id: int, sender: str, device_id: int, ts: int,
                    text: str | None, envelopes: Sequence[tuple[str, int, bytes]],
                    client_id: bytes | None = None, media: bytes | None = None,
                    blobs: Sequence[bytes] = ()) -> int:
        """Store a message (plaintext ``text`` and/or ``media``, or per-device ``envelopes``);
        its id, with the blobs it announces.

        Only plaintext goes into the search index. A ``client_id`` seen before from the same
        sender returns the earlier message's id and stores nothing.
        """
        secret = text is None and media is None
        with self._transaction() as db:
            if client_id is not None:
                row = db.execute("SELECT id, conversation FROM messages WHERE sender = ? AND "
                                 "client_id = ?", (sender, client_id)).fetchone()
                if row is not None:
                    if row[1] != conversation_id:
                        raise ClientIdReusedError(client_id)
                    return int(row[0])
            cursor = db.execute(
                "INSERT INTO messages (conversation, sender, device, ts, text, secret, "
                "client_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, sender, device_id, ts, text, int(secret), client_id))
            message_id = cursor.lastrowid
            assert message_id is not None
            if text is not None:
                db.execute("INSERT INTO message_text (rowid, text) VALUES (?, ?)",
                           (message_id, text))
            db.executemany("INSERT INTO envelopes VALUES (?, ?, ?, ?)",
                           [(message_id, a, d, e) for a, d, e in envelopes])
            if media is not None:
                db.execute("INSERT INTO message_media VALUES (?, ?)", (message_id, media))
            db.executemany("INSERT OR IGNORE INTO message_blobs VALUES (?, ?)",
                           [(message_id, b) for b in blobs])
            self._log(db, conversation_id, "message", message_id, sender, device_id, ts)
        return message_id

    @storage
    def media(self, message_ids: Sequence[int]) -> dict[int, bytes]:
        """The encoded media fields of those messages that have them."""
        found = {}
        for message_id in message_ids:
            row = self._db.execute("SELECT media FROM message_media WHERE message = ?",
                                   (message_id,)).fetchone()
            if row is not None:
                found[message_id] = row[0]
        return found

    @storage
    def may_download(self, blob_id: bytes, account: str) -> bool:
        """Whether ``account`` is a member of a conversation a message announced the blob in."""
        return self._db.execute(
            "SELECT 1 FROM message_blobs mb JOIN messages m ON m.id = mb.message "
            "JOIN members mb2 ON mb2.conversation = m.conversation AND mb2.account = ? "
            "WHERE mb.blob_id = ? LIMIT 1", (account, blob_id)).fetchone() is not None

    @storage
    def message(self, message_id: int) -> Message | None:
        """A message by id."""
        row = self._db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?",
                               (message_id,)).fetchone()
        return None if row is None else _message(row)

    @storage
    def set_reaction(self, message: Message, account: str, device_id: int,
                     emoji: str | None, ts: int) -> bool:
        """Set (or with None remove) ``account``'s reaction; False when nothing changed."""
        with self._transaction() as db:
            row = db.execute("SELECT emoji FROM reactions WHERE message = ? AND account = ?",
                             (message.id, account)).fetchone()
            if (row[0] if row else None) == emoji:
                return False
            if emoji is None:
                db.execute("DELETE FROM reactions WHERE message = ? AND account = ?",
                           (message.id, account))
            else:
                db.execute("INSERT OR REPLACE INTO reactions VALUES (?, ?, ?, ?)",
                           (message.id, account, emoji, ts))
            self._log(db, message.conversation, "reaction", message.id, account, device_id, ts,
                      emoji)
        return True

    @storage
    def set_pinned(self, message: Message, account: str, device_id: int, pinned: bool,
                   ts: int) -> bool:
        """Pin or unpin a message; False when it already was so."""
        with self._transaction() as db:
            was = db.execute("SELECT 1 FROM pins WHERE message = ?",
                             (message.id,)).fetchone() is not None
            if was == pinned:
                return False
            if pinned:
                db.execute("INSERT INTO pins VALUES (?, ?, ?, ?)",
                           (message.id, message.conversation, account, ts))
            else:
                db.execute("DELETE FROM pins WHERE message = ?", (message.id,))
            self._log(db, message.conversation, "pin" if pinned else "unpin", message.id,
                      account, device_id, ts)
        return True

    @storage
    def pins(self, conversation_id: int) -> list[Message]:
        """Pinned messages of a conversation, oldest message first."""
        return [_message(row) for row in self._db.execute(
            f"SELECT {', '.join('m.' + c for c in _MESSAGE_COLUMNS.split(', '))} "
            "FROM pins p JOIN messages m ON m.id = p.message "
            "WHERE p.conversation = ? ORDER BY m.id", (conversation_id,))]

    @storage
    def history(self, conversation_id: int, before: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages before id ``before`` (or the newest), oldest first."""
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?",
            (conversation_id, before if before is not None else 2**63 - 1, limit)).fetchall()
        return [_message(row) for row in reversed(rows)]

    @storage
    def reactions(self, message_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """``[(account, emoji), ...]`` per message id."""
        found: dict[int, list[tuple[str, str]]] = {}
        for message_id in message_ids:
            found[message_id] = [(a, e) for a, e in self._db.execute(
                "SELECT account, emoji FROM reactions WHERE message = ? ORDER BY ts, account",
                (message_id,))]
        return found

    @storage
    def pinned(self, message_ids: Sequence[int]) -> set[int]:
        """Which of these messages are pinned."""
        return {m for m in message_ids if self._db.execute(
            "SELECT 1 FROM pins WHERE message = ?", (m,)).fetchone()}

    def search(self, account: str, query: str, limit: int) -> list[Message]:
        """Plaintext messages of ``account``'s conversations matching every word, newest first.

        Not wrapped in :func:`~server.store_base.storage`: an ``sqlite3.Error`` here is FTS5
        refusing the query text, which the server answers with ``bad_request``.
        """
        match = fts_query(query)
        if not match:
            return []
        rows = self._db.execute(
            f"SELECT {', '.join('m.' + c for c in _MESSAGE_COLUMNS.split(', '))} "
            "FROM message_text JOIN messages m ON m.id = message_text.rowid "
            "JOIN members mb ON mb.conversation = m.conversation AND mb.account = ? "
            "WHERE message_text MATCH ? ORDER BY m.id DESC LIMIT ?",
            (account, match, limit)).fetchall()
        return [_message(row) for row in rows]

    # -- delivery -----------------------------------------------------------------------------

    @storage
    def events(self, account: str, device_id: int, after: int, limit: int) -> list[Event]:
        """Events of ``account``'s conversations after ``after``, in order."""
        rows = self._db.execute(
            "SELECT e.seq, e.kind, e.conversation, e.message, e.account, e.device, e.ts, "
            "e.emoji, m.text, COALESCE(m.secret, 0), env.envelope "
            "FROM events e JOIN members mb ON mb.conversation = e.conversation "
            "AND mb.account = ? "
            "LEFT JOIN messages m ON e.kind = 'message' AND m.id = e.message "
            "LEFT JOIN envelopes env ON e.kind = 'message' AND env.message = e.message "
            "AND env.account = ? AND env.device = ? "
            "WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
            (account, account, device_id, after, limit)).fetchall()
        return [Event(*row[:9], bool(row[9]), row[10]) for row in rows]

    @storage
    def cursor(self, account: str, device_id: int) -> int:
        """The last event the device acknowledged."""
        row = self._db.execute("SELECT cursor FROM devices WHERE account = ? AND device = ?",
                               (account, device_id)).fetchone()
        return 0 if row is None else int(row[0])

    @storage
    def acknowledge(self, account: str, device_id: int, seq: int) -> None:
        """Move the device's cursor forward to ``seq`` (never back, never past the log)."""
        self._db.execute(
            "UPDATE devices SET cursor = MAX(cursor, MIN(?, (SELECT COALESCE(MAX(seq), 0) "
            "FROM events))) WHERE account = ? AND device = ?", (seq, account, device_id))

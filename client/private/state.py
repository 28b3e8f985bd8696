"""The client's local state in one SQLite file in its home folder (mode 0600).

The protocol state (identity, prekeys, sessions) lives in the
:class:`~client.core.protocol_store.SqliteProtocolStore` tables; this module adds the account,
its account identity key, contacts (their verified device lists) and received messages, in the
same file, so that a decrypted message and the ratchet step that decrypted it commit together.
With a passphrase, message texts are sealed like the keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from e2e_proto.address import is_foreign
from e2e_proto.at_rest import INTERACTIVE
from e2e_proto.cross_identity import SignedCrossDeviceList
from e2e_proto.devices import SignedDeviceList
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair
from storage.sqlite import add_missing_column

from ..core.cross_outbox import CrossOutbox
from ..core.home_state import HomeState, SealedColumn
from ..core.sender_key_store import SqliteSenderKeyStore
from .group_state import GroupStore
from .profile_book import SCHEMA as PROFILE_SCHEMA
from .profile_book import SEALED_PROFILE_COLUMNS, ProfileBook

STATE_FILE = "state.db"
MESSAGE_TEXT = SealedColumn("messages", "id", "text")
_MESSAGE_COLUMNS = "id, sender, sender_device, peer, ts, kind, text"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS contacts (
    account TEXT PRIMARY KEY, account_key BLOB NOT NULL, list_body BLOB NOT NULL,
    list_signature BLOB NOT NULL, key_changed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS device_keys (key BLOB PRIMARY KEY, account TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_lists (
    account TEXT NOT NULL, account_key BLOB NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (account, account_key));
CREATE TABLE IF NOT EXISTS messages (
    id BLOB PRIMARY KEY, seen INTEGER NOT NULL, sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL, peer TEXT NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL,
    text TEXT, received_at REAL NOT NULL, held INTEGER NOT NULL DEFAULT 0);
"""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as kept locally; ``peer`` is the other account, or for a group message ``#``
    and the group id in hex (:func:`client.private.group_state.group_peer`)."""

    id: bytes
    sender: str
    sender_device: int
    peer: str
    ts: int
    kind: str
    text: str | None


class ClientState(HomeState):
    """Everything a client keeps between runs, in ``HOME/state.db``."""

    state_file = STATE_FILE
    schema = _SCHEMA + PROFILE_SCHEMA
    sealed_columns = (MESSAGE_TEXT, *SEALED_PROFILE_COLUMNS)

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        self._contacts: dict[str, tuple[Ed25519PublicKey, SignedDeviceList]] = {}
        super().__init__(home, passphrase, cost)
        self.sender_keys = SqliteSenderKeyStore(self.protocol)
        self.groups = GroupStore(self.db)
        self.profiles = ProfileBook(self.protocol)
        """Profiles and status updates (this account's and its contacts')."""
        self.cross_outbox = CrossOutbox(self.protocol)
        """Sends to the other transport not taken yet (:mod:`client.core.cross_outbox`)."""

    def migrate(self) -> None:
        """A home made before messages could be held gets the column; one made before device
        keys were bound to accounts gets its bindings."""
        add_missing_column(self.db, "messages", "held INTEGER NOT NULL DEFAULT 0")
        self._bind_known_device_keys()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic commit of protocol and client state; on failure memory forgets it too."""
        try:
            with self.protocol.transaction():
                yield
        except BaseException:
            self._contacts.clear()
            raise

    # -- settings -----------------------------------------------------------------------------

    def _get(self, name: str) -> object:
        row = self.db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def _set(self, name: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, value))

    @property
    def account(self) -> str | None:
        """The registered account name, once registration succeeded."""
        return self._get("account")  # type: ignore[return-value]

    @property
    def device_id(self) -> int:
        """This device's id (0 for the primary)."""
        value = self._get("device_id")
        return 0 if value is None else int(value)  # type: ignore[call-overload]

    def set_registered(self, account: str, device_id: int) -> None:
        """Record a successful registration (or link, with the id the primary gave)."""
        with self.protocol.transaction():
            self._set("account", account)
            self._set("device_id", device_id)

    def set_pending_link(self, account: str | None, account_key: Ed25519PublicKey | None = None,
                         secret: bytes = b"", device_id: int | None = None) -> None:
        """Remember a link in progress (sealed secret), or forget it with ``account=None``."""
        value = None if account is None or account_key is None else msgpack.packb(
            [account, account_key.raw, self.protocol.seal(secret, "link_secret"), device_id])
        self._set("pending_link", value)

    def pending_link(self) -> tuple[str, Ed25519PublicKey, bytes, int | None] | None:
        """The link in progress: account, its key, the code's secret, the approved id if any."""
        value = self._get("pending_link")
        if value is None:
            return None
        account, key, sealed, device_id = msgpack.unpackb(value)  # type: ignore[arg-type]
        return (account, Ed25519PublicKey(key), self.protocol.unseal(sealed, "link_secret"),
                device_id)

    @property
    def highest_device_id(self) -> int:
        """The highest device id this primary ever gave out (ids are never reused)."""
        return int(self._get("highest_device_id") or 0)  # type: ignore[call-overload]

    def set_highest_device_id(self, device_id: int) -> None:
        """Remember a device id given out."""
        self._set("highest_device_id", max(device_id, self.highest_device_id))

    def account_identity(self) -> IdentityKeyPair | None:
        """The account identity key (AIK), held by the primary device."""
        seed = self._get("account_key_seed")
        if seed is None:
            return None
        return IdentityKeyPair(self.protocol.unseal(seed, "account_key"))  # type: ignore[arg-type]

    def create_keys(self, account_identity: IdentityKeyPair | None,
                    device_identity: IdentityKeyPair) -> None:
        """Store a new DIK and, on a primary, the AIK (before registering or linking)."""
        if account_identity is not None:
            self._set("account_key_seed", self.protocol.seal(account_identity.seed, "account_key"))
        self.protocol.set_identity_key_pair(device_identity)

    def device_identity(self) -> IdentityKeyPair | None:
        """This device's identity key (DIK), once made."""
        return self.protocol.identity_key_pair() if self.protocol.has_identity() else None

    def find_message(self, prefix: str) -> StoredMessage | None:
        """The stored message whose hex id starts with ``prefix`` (None if none or ambiguous)."""
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE hex(id) LIKE ? "
                               "LIMIT 2", (prefix.upper() + "%",)).fetchall()
        return self._message(rows[0]) if len(rows) == 1 else None

    def reserve_ids(self, name: str, count: int) -> range:
        """Reserve ``count`` consecutive ids of a persistent counter."""
        with self.protocol.transaction():
            start = int(self._get(name) or 0) + 1  # type: ignore[call-overload]
            self._set(name, start + count - 1)
        return range(start, start + count)

    # -- contacts -----------------------------------------------------------------------------

    def contact(self, account: str) -> tuple[Ed25519PublicKey, SignedDeviceList] | None:
        """A contact's account key and last verified device list (for an account of the other
        transport, ``name@social``: its cross identity key and cross device list).

        Verified once when read from disk and then kept: every send reads two of them, and an
        Ed25519 verification costs more than the message's own encryption.
        """
        cached = self._contacts.get(account)
        if cached is not None:
            return cached
        row = self.db.execute("SELECT account_key, list_body, list_signature FROM contacts "
                              "WHERE account = ?", (account,)).fetchone()
        if row is None:
            return None
        key = Ed25519PublicKey(row[0])
        kind = SignedCrossDeviceList if is_foreign(account) else SignedDeviceList
        entry = self._contacts[account] = (key, kind.verify(key, row[1], row[2]))
        return entry

    def save_contact(self, account: str, key: Ed25519PublicKey, signed: SignedDeviceList,
                     key_changed: bool) -> None:
        """Keep a verified device list; a key change stays flagged until :meth:`accept_key`.

        Its device keys become bound to ``account`` (:meth:`device_key_owner`).
        """
        self.db.execute(
            "INSERT INTO contacts VALUES (?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET "
            "account_key = excluded.account_key, list_body = excluded.list_body, "
            "list_signature = excluded.list_signature, "
            "key_changed = MAX(key_changed, excluded.key_changed)",
            (account, key.raw, signed.body, signed.signature, int(key_changed)))
        self.db.execute(
            "INSERT INTO seen_lists VALUES (?, ?, ?) ON CONFLICT (account, account_key) "
            "DO UPDATE SET version = MAX(version, excluded.version)",
            (account, key.raw, signed.device_list.version))
        self._bind(account, signed)
        self._contacts[account] = (key, signed)

    def device_key_owner(self, key: Ed25519PublicKey) -> str | None:
        """The account whose verified device list first named ``key``, if any.

        A device key belongs to one account for good: a list of another account naming it is a
        relay relabelling someone's device (identity misbinding).
        """
        row = self.db.execute("SELECT account FROM device_keys WHERE key = ?",
                              (key.raw,)).fetchone()
        return None if row is None else str(row[0])

    def _bind_known_device_keys(self) -> None:
        """Fill ``device_keys`` from the stored lists of a home made before it was kept."""
        if self.db.execute("SELECT 1 FROM device_keys LIMIT 1").fetchone() is not None:
            return
        with self.protocol.transaction():
            for account in self.contacts():
                known = self.contact(account)
                if known is not None:
                    self._bind(account, known[1])

    def _bind(self, account: str, signed: SignedDeviceList) -> None:
        self.db.executemany("INSERT OR IGNORE INTO device_keys VALUES (?, ?)",
                            [(key.raw, account) for _, key in signed.device_list.devices])

    def highest_version(self, account: str, key: Ed25519PublicKey) -> int | None:
        """The newest device-list version seen for ``account`` under ``key``, if any.

        Kept per key, so that a list signed by a key seen before cannot roll back to an older
        version after an intervening key change.
        """
        row = self.db.execute("SELECT version FROM seen_lists WHERE account = ? AND "
                              "account_key = ?", (account, key.raw)).fetchone()
        return None if row is None else int(row[0])

    def key_changed(self, account: str) -> bool:
        """Whether the contact's account key changed and the user has not accepted it yet."""
        row = self.db.execute("SELECT key_changed FROM contacts WHERE account = ?",
                              (account,)).fetchone()
        return bool(row and row[0])

    def accept_key(self, account: str) -> int:
        """The user checked the new safety number: encrypt to the new key from now on, and show
        the messages held meanwhile (on the next receive); returns how many were held."""
        with self.protocol.transaction():
            self.db.execute("UPDATE contacts SET key_changed = 0 WHERE account = ?", (account,))
            return self.db.execute("UPDATE messages SET held = 0 WHERE held = 1 AND sender = ?",
                                   (account,)).rowcount

    def held_sender(self, message_id: bytes) -> str | None:
        """The sender of a message held until its account key change is accepted; None when
        the message is not held."""
        row = self.db.execute("SELECT sender FROM messages WHERE id = ? AND held = 1",
                              (message_id,)).fetchone()
        return None if row is None else str(row[0])

    def held_counts(self) -> list[tuple[str, int]]:
        """``(account, count)`` of messages held until the account's key change is accepted."""
        return [(str(a), int(n)) for a, n in self.db.execute(
            "SELECT sender, COUNT(*) FROM messages WHERE held = 1 GROUP BY sender "
            "ORDER BY sender")]

    def contacts(self) -> list[str]:
        """Known contact accounts."""
        return [r[0] for r in self.db.execute("SELECT account FROM contacts ORDER BY account")]

    # -- messages -----------------------------------------------------------------------------

    def add_message(self, message: StoredMessage, received_at: float,
                    seen: bool = False, held: bool = False) -> bool:
        """Keep a message; False when its id was stored already (a duplicate delivery).

        A received message stays unseen until :meth:`mark_seen`, so that one stored just
        before a crash or a lost connection is still shown once, on the next run. A ``held``
        one (its sender's account key changed, not accepted yet) is not shown until
        :meth:`accept_key`.
        """
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO messages (id, seen, sender, sender_device, peer, ts, kind, "
            "text, received_at, held) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message.id, int(seen), message.sender, message.sender_device, message.peer,
             message.ts, message.kind, self.seal_text(MESSAGE_TEXT, message.id, message.text),
             received_at, int(held)))
        return cursor.rowcount == 1

    def _message(self, row: tuple[object, ...]) -> StoredMessage:
        """A ``messages`` row (:data:`_MESSAGE_COLUMNS`) with its text unsealed."""
        message = StoredMessage(*row)  # type: ignore[arg-type]
        return dataclasses.replace(message, text=self.unseal_text(MESSAGE_TEXT, message.id,
                                                                  message.text))

    def has_message(self, message_id: bytes) -> bool:
        """Whether a message (or any payload) with this id was stored."""
        return self.db.execute("SELECT 1 FROM messages WHERE id = ?",
                               (message_id,)).fetchone() is not None

    def unseen(self) -> list[StoredMessage]:
        """Stored messages not yet shown to the user (nor held), in the order they arrived."""
        return [self._message(row) for row in self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE seen = 0 AND held = 0 "
            "ORDER BY rowid")]

    def mark_seen(self, message_id: bytes) -> None:
        """Record that a message was shown."""
        self.db.execute("UPDATE messages SET seen = 1 WHERE id = ?", (message_id,))

    def messages(self, peer: str | None = None) -> list[StoredMessage]:
        """Stored messages (with ``peer``, if given), in the order they were stored."""
        query = f"SELECT {_MESSAGE_COLUMNS} FROM messages"
        rows = (self.db.execute(query + " WHERE peer = ? ORDER BY rowid", (peer,))
                if peer else self.db.execute(query + " ORDER BY rowid"))
        return [self._message(row) for row in rows]

    def signed_prekey_id(self) -> int | None:
        """The id of the current signed prekey, once one was made."""
        value = self._get("signed_prekey_id")
        return None if value is None else int(value)  # type: ignore[call-overload]

    def set_signed_prekey(self, spk_id: int) -> None:
        """Record the current signed prekey id."""
        self._set("signed_prekey_id", spk_id)

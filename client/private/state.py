"""The client's local state in one SQLite file in its home folder (mode 0600).

The protocol state (identity, prekeys, sessions) lives in the
:class:`~client.core.protocol_store.SqliteProtocolStore` tables; this module adds the account,
its account identity key, contacts (their verified device lists) and received messages, in the
same file, so that a decrypted message and the ratchet step that decrypted it commit together.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from e2e_proto.at_rest import INTERACTIVE
from e2e_proto.devices import SignedDeviceList
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair

from ..core.home_state import HomeState
from ..core.sender_key_store import SqliteSenderKeyStore
from .group_state import GroupStore

STATE_FILE = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS contacts (
    account TEXT PRIMARY KEY, account_key BLOB NOT NULL, list_body BLOB NOT NULL,
    list_signature BLOB NOT NULL, key_changed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS seen_lists (
    account TEXT NOT NULL, account_key BLOB NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (account, account_key));
CREATE TABLE IF NOT EXISTS messages (
    id BLOB PRIMARY KEY, seen INTEGER NOT NULL, sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL, peer TEXT NOT NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL,
    text TEXT, received_at REAL NOT NULL);
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
    schema = _SCHEMA

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        super().__init__(home, passphrase, cost)
        self._contacts: dict[str, tuple[Ed25519PublicKey, SignedDeviceList]] = {}
        self.sender_keys = SqliteSenderKeyStore(self.protocol)
        self.groups = GroupStore(self.db)

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
        rows = [r for r in self.db.execute(
            "SELECT id, sender, sender_device, peer, ts, kind, text FROM messages "
            "WHERE hex(id) LIKE ? LIMIT 2", (prefix.upper() + "%",))]
        return StoredMessage(*rows[0]) if len(rows) == 1 else None

    def reserve_ids(self, name: str, count: int) -> range:
        """Reserve ``count`` consecutive ids of a persistent counter."""
        with self.protocol.transaction():
            start = int(self._get(name) or 0) + 1  # type: ignore[call-overload]
            self._set(name, start + count - 1)
        return range(start, start + count)

    # -- contacts -----------------------------------------------------------------------------

    def contact(self, account: str) -> tuple[Ed25519PublicKey, SignedDeviceList] | None:
        """A contact's account key and last verified device list.

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
        entry = self._contacts[account] = (key, SignedDeviceList.verify(key, row[1], row[2]))
        return entry

    def save_contact(self, account: str, key: Ed25519PublicKey, signed: SignedDeviceList,
                     key_changed: bool) -> None:
        """Keep a verified device list; a key change stays flagged until :meth:`accept_key`."""
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
        self._contacts[account] = (key, signed)

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

    def accept_key(self, account: str) -> None:
        """The user checked the new safety number: encrypt to the new key from now on."""
        self.db.execute("UPDATE contacts SET key_changed = 0 WHERE account = ?", (account,))

    def contacts(self) -> list[str]:
        """Known contact accounts."""
        return [r[0] for r in self.db.execute("SELECT account FROM contacts ORDER BY account")]

    # -- messages -----------------------------------------------------------------------------

    def add_message(self, message: StoredMessage, received_at: float,
                    seen: bool = False) -> bool:
        """Keep a message; False when its id was stored already (a duplicate delivery).

        A received message stays unseen until :meth:`mark_seen`, so that one stored just
        before a crash or a lost connection is still shown once, on the next run.
        """
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message.id, int(seen), message.sender, message.sender_device, message.peer,
             message.ts, message.kind, message.text, received_at))
        return cursor.rowcount == 1

    def has_message(self, message_id: bytes) -> bool:
        """Whether a message (or any payload) with this id was stored."""
        return self.db.execute("SELECT 1 FROM messages WHERE id = ?",
                               (message_id,)).fetchone() is not None

    def unseen(self) -> list[StoredMessage]:
        """Stored messages not yet shown to the user, in the order they arrived."""
        return [StoredMessage(*row) for row in self.db.execute(
            "SELECT id, sender, sender_device, peer, ts, kind, text FROM messages "
            "WHERE seen = 0 ORDER BY rowid")]

    def mark_seen(self, message_id: bytes) -> None:
        """Record that a message was shown."""
        self.db.execute("UPDATE messages SET seen = 1 WHERE id = ?", (message_id,))

    def messages(self, peer: str | None = None) -> list[StoredMessage]:
        """Stored messages (with ``peer``, if given), in the order they were stored."""
        query = "SELECT id, sender, sender_device, peer, ts, kind, text FROM messages"
        rows = (self.db.execute(query + " WHERE peer = ? ORDER BY rowid", (peer,))
                if peer else self.db.execute(query + " ORDER BY rowid"))
        return [StoredMessage(*row) for row in rows]

    def signed_prekey_id(self) -> int | None:
        """The id of the current signed prekey, once one was made."""
        value = self._get("signed_prekey_id")
        return None if value is None else int(value)  # type: ignore[call-overload]

    def set_signed_prekey(self, spk_id: int) -> None:
        """Record the current signed prekey id."""
        self._set("signed_prekey_id", spk_id)

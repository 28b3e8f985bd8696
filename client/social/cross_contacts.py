"""The private accounts a social device chats with (``name@private``), as it verified them.

Per account: the account key (AIK) and the last device list it signed, checked like a private
client checks one (:mod:`client.private.device_lists`): signed by the key, every linked
device's link signature valid, never an older version under the same key. A new key is kept
but flagged: nothing is encrypted to the account, and its messages are held, until the user
checks the safety number and accepts it (``verify NAME@private --accept``). Kept in the device's
``social.db`` beside its sessions.
"""

from __future__ import annotations

import sqlite3

from e2e_proto.devices import SignedDeviceList
from e2e_proto.keys import Ed25519PublicKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS cross_contacts (
    account TEXT PRIMARY KEY, account_key BLOB NOT NULL, list_body BLOB NOT NULL,
    list_signature BLOB NOT NULL, key_changed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS cross_seen_lists (
    account TEXT NOT NULL, account_key BLOB NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (account, account_key));
"""


class CrossContacts:
    """The ``cross_contacts`` and ``cross_seen_lists`` tables of a social device's state."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)

    def get(self, account: str) -> tuple[Ed25519PublicKey, SignedDeviceList] | None:
        """The account's key and last verified list."""
        row = self._db.execute("SELECT account_key, list_body, list_signature FROM "
                               "cross_contacts WHERE account = ?", (account,)).fetchone()
        if row is None:
            return None
        key = Ed25519PublicKey(row[0])
        return key, SignedDeviceList.verify(key, row[1], row[2])

    def highest_version(self, account: str, key: Ed25519PublicKey) -> int | None:
        """The newest list version seen for ``account`` under ``key``."""
        row = self._db.execute("SELECT version FROM cross_seen_lists WHERE account = ? AND "
                               "account_key = ?", (account, key.raw)).fetchone()
        return None if row is None else int(row[0])

    def save(self, account: str, key: Ed25519PublicKey, signed: SignedDeviceList,
             key_changed: bool) -> None:
        """Keep a verified list; a key change stays flagged until :meth:`accept`."""
        self._db.execute(
            "INSERT INTO cross_contacts VALUES (?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE "
            "SET account_key = excluded.account_key, list_body = excluded.list_body, "
            "list_signature = excluded.list_signature, "
            "key_changed = MAX(key_changed, excluded.key_changed)",
            (account, key.raw, signed.body, signed.signature, int(key_changed)))
        self._db.execute(
            "INSERT INTO cross_seen_lists VALUES (?, ?, ?) ON CONFLICT (account, account_key) "
            "DO UPDATE SET version = MAX(version, excluded.version)",
            (account, key.raw, signed.device_list.version))

    def key_changed(self, account: str) -> bool:
        """Whether the account's key changed and the user has not accepted it."""
        row = self._db.execute("SELECT key_changed FROM cross_contacts WHERE account = ?",
                               (account,)).fetchone()
        return bool(row and row[0])

    def accept(self, account: str) -> None:
        """The user checked the safety number: trust the account's current key."""
        self._db.execute("UPDATE cross_contacts SET key_changed = 0 WHERE account = ?",
                         (account,))

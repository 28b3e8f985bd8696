"""Group sender keys in the client's SQLite state file: :class:`e2e_proto.stores.SenderKeyStore`.

The tables live in the same file (and the same connection) as the protocol store's, so that a
group message's chain step commits in the caller's transaction together with the stored message,
before the relay is told to delete it; records are sealed at rest like sessions when the home
has a passphrase. Nothing is cached: every load reads the committed row, so a rolled-back
transaction can never leave memory ahead of the file.
"""

from __future__ import annotations

from e2e_proto.address import Address
from e2e_proto.sender_keys import OwnSenderKey, SenderKeyRecord

from .protocol_store import SqliteProtocolStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS own_sender_keys (group_id BLOB PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sender_keys (
    group_id BLOB NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (group_id, account, device));
"""


class SqliteSenderKeyStore:
    """This device's own sender key per group and the chains received per (group, sender)."""

    def __init__(self, protocol: SqliteProtocolStore) -> None:
        self._protocol = protocol
        self._db = protocol.connection
        self._db.executescript(_SCHEMA)

    def load_own_sender_key(self, group_id: bytes) -> OwnSenderKey | None:
        """This device's current sender key in the group, if it made one."""
        row = self._db.execute("SELECT key FROM own_sender_keys WHERE group_id = ?",
                               (group_id,)).fetchone()
        if row is None:
            return None
        return OwnSenderKey.from_bytes(self._protocol.unseal(row[0], _own_place(group_id)))

    def store_own_sender_key(self, key: OwnSenderKey) -> None:
        """Write this device's sender key for ``key.group_id`` (before its message is sent)."""
        self._db.execute("INSERT OR REPLACE INTO own_sender_keys VALUES (?, ?)",
                         (key.group_id, self._protocol.seal(key.to_bytes(),
                                                            _own_place(key.group_id))))

    def delete_own_sender_key(self, group_id: bytes) -> None:
        """Forget this device's sender key in a group it left."""
        self._db.execute("DELETE FROM own_sender_keys WHERE group_id = ?", (group_id,))

    def load_sender_key(self, group_id: bytes, sender: Address) -> SenderKeyRecord | None:
        """The chains received from ``sender`` in the group, if any."""
        row = self._db.execute("SELECT record FROM sender_keys WHERE group_id = ? AND "
                               "account = ? AND device = ?", (group_id, *sender)).fetchone()
        if row is None:
            return None
        return SenderKeyRecord.from_bytes(
            self._protocol.unseal(row[0], _place(group_id, sender)))

    def store_sender_key(self, sender: Address, record: SenderKeyRecord) -> None:
        """Write ``sender``'s chains in ``record.group_id`` (before the caller acknowledges)."""
        self._db.execute("INSERT OR REPLACE INTO sender_keys VALUES (?, ?, ?, ?)",
                         (record.group_id, *sender,
                          self._protocol.seal(record.to_bytes(),
                                              _place(record.group_id, sender))))


def _own_place(group_id: bytes) -> str:
    return f"own_sender_key/{group_id.hex()}"


def _place(group_id: bytes, sender: Address) -> str:
    return f"sender_key/{group_id.hex()}/{sender}"

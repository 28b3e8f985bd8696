"""Group sender keys in the client's SQLite state file: :class:`e2e_proto.stores.SenderKeyStore`.

The tables live in the same file (and the same connection) as the protocol store's, so that a
group message's chain step commits in the caller's transaction together with the stored message,
before the relay is told to delete it; values are sealed at rest like sessions when the home has
a passphrase, each bound to its place.

Decoded keys stay in memory, as the protocol store keeps sessions, so a send does not derive its
signing key again nor a receive parse its record: every store writes the file first, and a
transaction that rolls back (:meth:`SqliteProtocolStore.on_rollback`) or a write that fails drops
them, so memory never runs ahead of the file.

A received record is kept in two parts: its chains (``sender_keys``, small, written by every
message) and each chain's skipped keys (``sender_key_skipped``, up to 2000 keys or 76 KB, written
only when they changed, which an in-order message never does). So a member that sends one message
far ahead cannot make every later message re-encode and re-seal the keys it left behind. A row
written before the keys were kept apart holds them inline; it is read as it is, and split when it
is next stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2e_proto.address import Address
from e2e_proto.sender_keys import OwnSenderKey, SenderKeyRecord

from .protocol_store import SqliteProtocolStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS own_sender_keys (group_id BLOB PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sender_keys (
    group_id BLOB NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL,
    record BLOB NOT NULL, PRIMARY KEY (group_id, account, device));
CREATE TABLE IF NOT EXISTS sender_key_skipped (
    group_id BLOB NOT NULL, account TEXT NOT NULL, device INTEGER NOT NULL,
    chain_id INTEGER NOT NULL, keys BLOB NOT NULL,
    PRIMARY KEY (group_id, account, device, chain_id));
"""
_SENDER = "group_id = ? AND account = ? AND device = ?"


@dataclass(slots=True)
class _Held:
    """A decoded record, and each chain's skipped keys as the file holds them apart (the very
    mapping written: a chain replaces it when its skipped keys change)."""

    record: SenderKeyRecord
    written: dict[int, dict[int, bytes]]


class SqliteSenderKeyStore:
    """This device's own sender key per group and the chains received per (group, sender)."""

    def __init__(self, protocol: SqliteProtocolStore) -> None:
        self._protocol = protocol
        self._db = protocol.connection
        self._db.executescript(_SCHEMA)
        self._own: dict[bytes, OwnSenderKey] = {}
        self._received: dict[tuple[bytes, Address], _Held] = {}
        protocol.on_rollback(self._forget)

    def _forget(self) -> None:
        self._own.clear()
        self._received.clear()

    def load_own_sender_key(self, group_id: bytes) -> OwnSenderKey | None:
        """This device's current sender key in the group, if it made one."""
        key = self._own.get(group_id)
        if key is None:
            row = self._db.execute("SELECT key FROM own_sender_keys WHERE group_id = ?",
                                   (group_id,)).fetchone()
            if row is None:
                return None
            key = self._own[group_id] = OwnSenderKey.from_bytes(
                self._protocol.unseal(row[0], _own_place(group_id)))
        return key

    def store_own_sender_key(self, key: OwnSenderKey) -> None:
        """Write this device's sender key for ``key.group_id`` (before its message is sent)."""
        try:
            self._db.execute("INSERT OR REPLACE INTO own_sender_keys VALUES (?, ?)",
                             (key.group_id, self._protocol.seal(key.to_bytes(),
                                                                _own_place(key.group_id))))
        except BaseException:
            self._own.pop(key.group_id, None)
            raise
        self._own[key.group_id] = key

    def delete_own_sender_key(self, group_id: bytes) -> None:
        """Forget this device's sender key in a group it left."""
        self._db.execute("DELETE FROM own_sender_keys WHERE group_id = ?", (group_id,))
        self._own.pop(group_id, None)

    def load_sender_key(self, group_id: bytes, sender: Address) -> SenderKeyRecord | None:
        """The chains received from ``sender`` in the group, if any."""
        held = self._received.get((group_id, sender))
        if held is not None:
            return held.record
        where = (group_id, *sender)
        row = self._db.execute(f"SELECT record FROM sender_keys WHERE {_SENDER}",
                               where).fetchone()
        if row is None:
            return None
        unseal = self._protocol.unseal
        apart = {chain_id: unseal(keys, _skipped_place(group_id, sender, chain_id))
                 for chain_id, keys in self._db.execute(
                     f"SELECT chain_id, keys FROM sender_key_skipped WHERE {_SENDER}", where)}
        record = SenderKeyRecord.from_bytes(unseal(row[0], _place(group_id, sender)), apart)
        self._received[(group_id, sender)] = _Held(
            record, {chain_id: record.chains[chain_id].skipped for chain_id in apart})
        return record

    def store_sender_key(self, sender: Address, record: SenderKeyRecord) -> None:
        """Write ``sender``'s chains in ``record.group_id``, and the skipped keys of the chains
        whose skipped keys changed since they were written (before the caller acknowledges);
        all or nothing, inside the caller's transaction or not."""
        group_id = record.group_id
        cached = (group_id, sender)
        where = (group_id, *sender)
        db, seal = self._db, self._protocol.seal
        held = self._received.get(cached)
        db.execute("SAVEPOINT store_sender_key")
        try:
            db.execute("INSERT OR REPLACE INTO sender_keys VALUES (?, ?, ?, ?)",
                       (*where, seal(record.to_bytes(skipped=False), _place(group_id, sender))))
            if held is None or held.record is not record:  # what is held apart is not known
                db.execute(f"DELETE FROM sender_key_skipped WHERE {_SENDER}", where)
                held = self._received[cached] = _Held(record, {})
            chains, written = record.chains, held.written
            for chain_id in [i for i in written if i not in chains]:  # evicted chains
                db.execute(f"DELETE FROM sender_key_skipped WHERE {_SENDER} AND chain_id = ?",
                           (*where, chain_id))
                del written[chain_id]
            for chain_id, chain in chains.items():
                skipped = chain.skipped
                if written.get(chain_id) is skipped:
                    continue
                if skipped:
                    db.execute("INSERT OR REPLACE INTO sender_key_skipped VALUES (?, ?, ?, ?, ?)",
                               (*where, chain_id, seal(chain.skipped_to_bytes(), _skipped_place(
                                   group_id, sender, chain_id))))
                elif chain_id in written:
                    db.execute(f"DELETE FROM sender_key_skipped WHERE {_SENDER} AND chain_id = ?",
                               (*where, chain_id))
                written[chain_id] = skipped
            db.execute("RELEASE store_sender_key")
        except BaseException:
            self._received.pop(cached, None)
            if db.in_transaction:  # unless SQLite rolled back by itself (a full disk)
                db.execute("ROLLBACK TO store_sender_key")
                db.execute("RELEASE store_sender_key")
            raise


def _own_place(group_id: bytes) -> str:
    return f"own_sender_key/{group_id.hex()}"


def _place(group_id: bytes, sender: Address) -> str:
    return f"sender_key/{group_id.hex()}/{sender}"


def _skipped_place(group_id: bytes, sender: Address, chain_id: int) -> str:
    return f"sender_key_skipped/{group_id.hex()}/{sender}/{chain_id}"

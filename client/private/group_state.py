"""The groups a device knows, in its SQLite state file: each group's latest accepted signed state
(this device's own end-to-end copy, never the relay's) and to which devices this device gave its
current sender key.

A group is kept after this account left or was removed (``is_member`` false), so that an old
update cannot bring it back. A stored state is the signed update it came from, parsed again when
read; a state this device made and has not yet delivered to every member is flagged, so the
next group command delivers it again: to every device when its delivery was cut short, only to
the devices the relay left out (a full mailbox) when it was not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import msgpack

from e2e_proto.address import Address
from e2e_proto.groups import GroupState, GroupUpdate
from storage.sqlite import add_missing_column

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    group_id BLOB PRIMARY KEY, version INTEGER NOT NULL, name TEXT NOT NULL,
    body BLOB NOT NULL, signature BLOB NOT NULL, undelivered INTEGER NOT NULL DEFAULT 0,
    resend_to BLOB);
CREATE TABLE IF NOT EXISTS sender_key_shared (
    group_id BLOB NOT NULL, chain_id INTEGER NOT NULL, account TEXT NOT NULL,
    device INTEGER NOT NULL, PRIMARY KEY (group_id, chain_id, account, device));
"""

GROUP_PEER_PREFIX = "#"
"""A stored group message's ``peer``: ``#`` then the group id in hex (no account starts so)."""


def group_peer(group_id: bytes) -> str:
    """The ``peer`` a group message is stored under."""
    return GROUP_PEER_PREFIX + group_id.hex()


def peer_group_id(peer: str) -> bytes | None:
    """The group id of a stored group message's ``peer``, None for a one-to-one peer."""
    return bytes.fromhex(peer[1:]) if peer.startswith(GROUP_PEER_PREFIX) else None


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group as this device holds it: the state and the signed update it came from."""

    update: GroupUpdate
    undelivered: bool
    resend_to: tuple[Address, ...] | None = None
    """The devices an undelivered state still has to reach (None: every device)."""

    @property
    def state(self) -> GroupState:
        """The accepted state."""
        return self.update.state


class GroupStore:
    """The ``groups`` and ``sender_key_shared`` tables of a client's state file."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        add_missing_column(self._db, "groups", "resend_to BLOB")

    @staticmethod
    def _stored(body: bytes, signature: bytes, undelivered: int, resend_to: bytes | None
                ) -> StoredGroup:
        devices = None if resend_to is None else tuple(
            Address(a, d) for a, d in msgpack.unpackb(resend_to))
        return StoredGroup(GroupUpdate.decode(body, signature), bool(undelivered), devices)

    def get(self, group_id: bytes) -> StoredGroup | None:
        """The group with this id, if known."""
        row = self._db.execute("SELECT body, signature, undelivered, resend_to FROM groups "
                               "WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else self._stored(*row)

    def all(self) -> list[StoredGroup]:
        """Every known group, by name."""
        return [self._stored(*row) for row in self._db.execute(
            "SELECT body, signature, undelivered, resend_to FROM groups ORDER BY name, "
            "group_id")]

    def save(self, update: GroupUpdate, undelivered: bool = False) -> None:
        """Keep an accepted update as the group's state (the caller checked it); an
        ``undelivered`` one is for every device."""
        state = update.state
        self._db.execute("INSERT OR REPLACE INTO groups (group_id, version, name, body, "
                         "signature, undelivered, resend_to) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                         (state.group_id, state.version, state.name, update.body,
                          update.signature, int(undelivered)))

    def set_undelivered_to(self, group_id: bytes, devices: Iterable[Address]) -> None:
        """The group's latest state still has to reach ``devices`` (and no other)."""
        self._db.execute("UPDATE groups SET undelivered = 1, resend_to = ? WHERE group_id = ?",
                         (msgpack.packb([list(d) for d in sorted(devices)]), group_id))

    def set_delivered(self, group_id: bytes) -> None:
        """The group's latest state reached every member device."""
        self._db.execute("UPDATE groups SET undelivered = 0, resend_to = NULL WHERE group_id = ?",
                         (group_id,))

    def shared(self, group_id: bytes, chain_id: int) -> set[Address]:
        """The devices this device gave its sender key ``chain_id`` in the group."""
        return {Address(a, d) for a, d in self._db.execute(
            "SELECT account, device FROM sender_key_shared WHERE group_id = ? AND chain_id = ?",
            (group_id, chain_id))}

    def add_shared(self, group_id: bytes, chain_id: int, devices: Iterable[Address]) -> None:
        """Record that ``devices`` now hold this device's sender key ``chain_id``."""
        self._db.executemany("INSERT OR IGNORE INTO sender_key_shared VALUES (?, ?, ?, ?)",
                             [(group_id, chain_id, *d) for d in devices])

    def forget_shared(self, group_id: bytes) -> None:
        """Forget every device given an older sender key of the group (after a rotation)."""
        self._db.execute("DELETE FROM sender_key_shared WHERE group_id = ?", (group_id,))

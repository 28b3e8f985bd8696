"""A client's group table (client/private/group_state.py) across versions: a state file made
before undelivered changes named their devices gains the column, and keeps its groups."""

from __future__ import annotations

import sqlite3

from client.private.group_state import GroupStore
from e2e_proto.address import Address
from e2e_proto.groups import GroupState, GroupUpdate
from e2e_proto.keys import IdentityKeyPair

OLD_SCHEMA = """
CREATE TABLE groups (
    group_id BLOB PRIMARY KEY, version INTEGER NOT NULL, name TEXT NOT NULL,
    body BLOB NOT NULL, signature BLOB NOT NULL, undelivered INTEGER NOT NULL DEFAULT 0);
"""


def _update() -> GroupUpdate:
    state = GroupState.create("club", "alice", ["bob"])
    return GroupUpdate.sign(state, Address("alice", 0), IdentityKeyPair.generate())


def test_an_older_state_file_gains_the_devices_still_to_reach() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(OLD_SCHEMA)
    update = _update()
    db.execute("INSERT INTO groups VALUES (?, 1, 'club', ?, ?, 1)",
               (update.state.group_id, update.body, update.signature))
    groups = GroupStore(db)
    (stored,) = groups.all()
    assert stored.undelivered and stored.resend_to is None  # cut short: every device
    groups.set_undelivered_to(update.state.group_id, [Address("bob", 1), Address("bob", 0)])
    assert groups.get(update.state.group_id).resend_to == (Address("bob", 0), Address("bob", 1))
    groups.set_delivered(update.state.group_id)
    assert groups.get(update.state.group_id).resend_to is None
    assert not groups.get(update.state.group_id).undelivered

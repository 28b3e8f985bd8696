"""The client's sender-key store: persisted in the state file, rolled back with the transaction
it ran in, sealed at rest with a passphrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.private.state import ClientState
from e2e_proto.address import Address
from e2e_proto.at_rest import INTERACTIVE, MINIMUM
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.sender_keys import SenderKeyDistribution, SenderKeyRecord
from e2e_proto.stores import MemorySenderKeyStore

GROUP = b"\x05" * 16
ALICE = Address("alice", 0)


def _state(home: Path, passphrase: str | None = None) -> ClientState:
    return ClientState(home, passphrase, MINIMUM if passphrase else INTERACTIVE)


def test_keys_survive_a_restart_and_roll_back_with_their_transaction(tmp_path: Path) -> None:
    sender = GroupCipher(MemorySenderKeyStore())
    distribution = sender.distribution(GROUP)
    state = _state(tmp_path / "bob")
    state.protocol.set_identity_key_pair(IdentityKeyPair.generate())
    receiver = GroupCipher(state.sender_keys)
    with state.transaction():
        receiver.process(ALICE, distribution)
    first, second = sender.encrypt(GROUP, b"one"), sender.encrypt(GROUP, b"two")
    with pytest.raises(RuntimeError), state.transaction():
        assert receiver.decrypt(ALICE, first) == b"one"
        raise RuntimeError("the message could not be stored: nothing commits")
    state.close()
    again = _state(tmp_path / "bob")
    receiver = GroupCipher(again.sender_keys)
    assert receiver.decrypt(ALICE, first) == b"one"  # the chain step was rolled back
    assert receiver.decrypt(ALICE, second) == b"two"
    again.close()


def test_sender_keys_are_sealed_at_rest(tmp_path: Path) -> None:
    state = _state(tmp_path / "alice", "a long passphrase")
    state.protocol.set_identity_key_pair(IdentityKeyPair.generate())
    own = GroupCipher(state.sender_keys)
    distribution = own.distribution(GROUP)
    state.sender_keys.store_sender_key(ALICE, _record(distribution))
    state.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "alice").iterdir())
    assert distribution.chain_key not in raw
    reopened = _state(tmp_path / "alice", "a long passphrase")
    assert reopened.sender_keys.load_own_sender_key(GROUP).chain_key == distribution.chain_key
    assert reopened.sender_keys.load_sender_key(GROUP, ALICE) is not None
    reopened.close()


def _record(distribution: SenderKeyDistribution) -> SenderKeyRecord:
    record = SenderKeyRecord(GROUP)
    record.process(distribution)
    return record

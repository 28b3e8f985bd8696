"""The client's sender-key store: persisted in the state file, rolled back with the transaction
it ran in, sealed at rest with a passphrase; kept decoded in memory but never ahead of the file,
and with each chain's skipped keys apart, so an in-order message rewrites none of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.private.state import ClientState
from e2e_proto import primitives
from e2e_proto.address import Address
from e2e_proto.at_rest import INTERACTIVE, MINIMUM
from e2e_proto.constants import MAX_SENDER_KEY_CHAINS, MAX_SENDER_KEY_SKIPPED
from e2e_proto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidSignatureError,
    NoSenderKeyError,
    TooManySkippedError,
)
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.sender_keys import (
    OwnSenderKey,
    SenderKeyDistribution,
    SenderKeyMessage,
    SenderKeyRecord,
    decode_header,
    signed_bytes,
)
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


# -- finding 9: decoded keys are kept, and an in-order receive rewrites no skipped key --------

JUMP = MAX_SENDER_KEY_SKIPPED  # a message this far ahead leaves the most skipped keys kept


def _receiver(home: Path, passphrase: str | None = "a long passphrase") -> ClientState:
    state = _state(home, passphrase)
    state.protocol.set_identity_key_pair(IdentityKeyPair.generate())
    return state


def _rows(state: ClientState) -> list[tuple]:
    """Every stored row of the sender-key tables, as bytes on disk."""
    tables = [r[0] for r in state.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%sender_key%'")]
    return sorted((t, *row) for t in tables for row in state.db.execute(f'SELECT * FROM "{t}"'))


def test_sending_derives_the_signing_key_once_per_key(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    state = _receiver(tmp_path / "alice")
    sender = GroupCipher(state.sender_keys)
    with state.transaction():
        sender.distribution(GROUP)
    derived = []
    real = primitives.ed25519_keypair
    monkeypatch.setattr(primitives, "ed25519_keypair", lambda seed: derived.append(1) or real(seed))
    for number in range(20):
        with state.transaction():
            sender.encrypt(GROUP, b"message %d" % number)
    assert derived == []
    state.close()
    again = _state(tmp_path / "alice", "a long passphrase")
    sender = GroupCipher(again.sender_keys)
    for number in range(20):  # after a restart: derived once, on the first load
        with again.transaction():
            assert decode_header(sender.encrypt(GROUP, b"%d" % number).header)[2] == 20 + number
    assert derived == [1]
    again.close()


def test_an_in_order_receive_after_a_jump_rewrites_no_skipped_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One message far ahead must not make every later one re-encode and re-seal the keys it
    left behind (a member could force that on everyone): the chains are written, not them."""
    sender = GroupCipher(MemorySenderKeyStore())
    distribution = sender.distribution(GROUP)
    messages = [sender.encrypt(GROUP, b"%d" % i) for i in range(JUMP + 3)]
    state = _receiver(tmp_path / "bob")
    receiver = GroupCipher(state.sender_keys)
    with state.transaction():
        receiver.process(ALICE, distribution)
    with state.transaction():
        assert receiver.decrypt(ALICE, messages[JUMP]) == b"%d" % JUMP
    sealed: list[int] = []
    seal = state.protocol.seal
    monkeypatch.setattr(state.protocol, "seal", lambda value, place: sealed.append(len(value))
                        or seal(value, place))
    parsed = []
    parse = SenderKeyRecord.from_bytes
    monkeypatch.setattr(SenderKeyRecord, "from_bytes",
                        lambda *args: parsed.append(args) or parse(*args))
    for later in messages[JUMP + 1:]:
        with state.transaction():
            receiver.decrypt(ALICE, later)
        assert 0 < sum(sealed) < 200 and parsed == []  # the chain only, and no record parsed
        sealed.clear()
    monkeypatch.undo()
    state.close()
    again = _state(tmp_path / "bob", "a long passphrase")  # the skipped keys were kept
    receiver = GroupCipher(again.sender_keys)
    with again.transaction():
        assert receiver.decrypt(ALICE, messages[5]) == b"5"
    again.close()
    again = _state(tmp_path / "bob", "a long passphrase")  # and the one used is gone
    receiver = GroupCipher(again.sender_keys)
    with pytest.raises(DuplicateMessageError):
        receiver.decrypt(ALICE, messages[5])
    assert receiver.decrypt(ALICE, messages[0]) == b"0"
    record = again.sender_keys.load_sender_key(GROUP, ALICE)
    assert record is not None and len(record.chains[distribution.chain_id].skipped) == JUMP - 2
    again.close()


def _far_ahead_with_a_bad_tag(sender: OwnSenderKey, skipped: int) -> SenderKeyMessage:
    """A message ``skipped`` iterations ahead, signed by the sender, whose AEAD tag fails."""
    skip_keys(sender, skipped)
    message = sender.encrypt(b"tampered")
    ciphertext = bytes([message.ciphertext[0] ^ 1]) + message.ciphertext[1:]
    _, secret = primitives.ed25519_keypair(sender.signing_seed)
    return message._replace(ciphertext=ciphertext, signature=primitives.ed25519_sign(
        secret, signed_bytes(message.header, message.nonce, ciphertext)))


def skip_keys(sender: OwnSenderKey, count: int) -> None:
    for _ in range(count):
        sender.next_sending_key()


def test_a_failed_decrypt_leaves_the_stored_and_the_held_record_as_they_were(
        tmp_path: Path) -> None:
    sender = OwnSenderKey.create(GROUP)
    distribution = sender.distribution()
    messages = [sender.encrypt(b"%d" % i) for i in range(4)]
    state = _receiver(tmp_path / "bob")
    receiver = GroupCipher(state.sender_keys)
    with state.transaction():
        receiver.process(ALICE, distribution)
    with state.transaction():
        assert receiver.decrypt(ALICE, messages[2]) == b"2"  # 0 and 1 skipped
    held = state.sender_keys.load_sender_key(GROUP, ALICE)
    assert held is not None
    before, rows = held.to_bytes(), _rows(state)
    failures = [
        (messages[2], DuplicateMessageError),
        (messages[3]._replace(signature=bytes(64)), InvalidSignatureError),
        (_far_ahead_with_a_bad_tag(sender, JUMP), DecryptionError),
        (_far_ahead_with_a_bad_tag(sender, 30_000), TooManySkippedError),
    ]
    for message, error in failures:
        with pytest.raises(error), state.transaction():
            receiver.decrypt(ALICE, message)
        assert held.to_bytes() == before and _rows(state) == rows
        assert state.sender_keys.load_sender_key(GROUP, ALICE).to_bytes() == before  # type: ignore[union-attr]
    assert [receiver.decrypt(ALICE, m) for m in (messages[0], messages[3], messages[1])] == [
        b"0", b"3", b"1"]
    state.close()


def test_a_rolled_back_transaction_leaves_no_held_key_ahead_of_the_file(tmp_path: Path) -> None:
    """Decrypted or sent, then the transaction failed: the same state object is back where
    the file is (a message taken again decrypts again; a send reuses the iteration)."""
    sender = GroupCipher(MemorySenderKeyStore())
    distribution = sender.distribution(GROUP)
    messages = [sender.encrypt(GROUP, b"%d" % i) for i in range(JUMP + 2)]
    state = _receiver(tmp_path / "bob")
    receiver = GroupCipher(state.sender_keys)
    with state.transaction():
        receiver.process(ALICE, distribution)
        own = receiver.distribution(GROUP)
    rows = _rows(state)
    for message in (messages[0], messages[JUMP]):  # in order; far ahead
        with pytest.raises(RuntimeError), state.transaction():
            receiver.decrypt(ALICE, message)
            raise RuntimeError("the message could not be stored")
        assert _rows(state) == rows
    with pytest.raises(RuntimeError), state.transaction():
        receiver.encrypt(GROUP, b"never sent")
        raise RuntimeError("the send failed")
    assert _rows(state) == rows
    with state.transaction():
        assert decode_header(receiver.encrypt(GROUP, b"sent").header)[2] == own.iteration
        assert receiver.decrypt(ALICE, messages[JUMP]) == b"%d" % JUMP
        assert receiver.decrypt(ALICE, messages[0]) == b"0"
    state.close()


def test_a_store_that_fails_writes_nothing_and_holds_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a transaction too: the chains and their skipped keys are written together."""
    sender = GroupCipher(MemorySenderKeyStore())
    distribution = sender.distribution(GROUP)
    messages = [sender.encrypt(GROUP, b"%d" % i) for i in range(JUMP + 1)]
    state = _receiver(tmp_path / "bob")
    receiver = GroupCipher(state.sender_keys)
    receiver.process(ALICE, distribution)
    rows = _rows(state)
    seal = state.protocol.seal

    def full_disk(value: bytes, place: str) -> bytes:
        if place.startswith("sender_key_skipped/"):
            raise OSError("disk full")
        return seal(value, place)

    monkeypatch.setattr(state.protocol, "seal", full_disk)
    with pytest.raises(OSError):
        receiver.decrypt(ALICE, messages[JUMP])
    assert _rows(state) == rows
    monkeypatch.undo()
    assert receiver.decrypt(ALICE, messages[JUMP]) == b"%d" % JUMP
    assert receiver.decrypt(ALICE, messages[3]) == b"3"
    state.close()


def test_a_record_stored_whole_before_is_read_and_split_when_stored(tmp_path: Path) -> None:
    """A home made before the skipped keys were kept apart holds them inside the record."""
    sender = OwnSenderKey.create(GROUP)
    record = SenderKeyRecord(GROUP)
    record.process(sender.distribution())
    messages = [sender.encrypt(b"%d" % i) for i in range(12)]
    record.decrypt(messages[10])
    state = _receiver(tmp_path / "bob")
    state.db.execute("INSERT INTO sender_keys VALUES (?, ?, ?, ?)",
                     (GROUP, *ALICE, state.protocol.seal(record.to_bytes(),
                                                         f"sender_key/{GROUP.hex()}/{ALICE}")))
    receiver = GroupCipher(state.sender_keys)
    with state.transaction():
        assert receiver.decrypt(ALICE, messages[11]) == b"11"
    state.close()
    again = _state(tmp_path / "bob", "a long passphrase")
    assert again.db.execute("SELECT count(*) FROM sender_key_skipped").fetchone() == (1,)
    receiver = GroupCipher(again.sender_keys)
    assert [receiver.decrypt(ALICE, messages[i]) for i in (9, 0)] == [b"9", b"0"]
    again.close()


def test_the_skipped_keys_of_an_evicted_chain_go_with_it(tmp_path: Path) -> None:
    sender = OwnSenderKey.create(GROUP)
    state = _receiver(tmp_path / "bob")
    receiver = GroupCipher(state.sender_keys)
    receiver.process(ALICE, sender.distribution())
    messages = [sender.encrypt(b"%d" % i) for i in range(3)]
    receiver.decrypt(ALICE, messages[2])
    assert state.db.execute("SELECT chain_id FROM sender_key_skipped").fetchall() == [
        (sender.chain_id,)]
    for _ in range(MAX_SENDER_KEY_CHAINS):  # five newer chains: the first is evicted
        sender = sender.rotate()
        receiver.process(ALICE, sender.distribution())
    assert state.db.execute("SELECT count(*) FROM sender_key_skipped").fetchone() == (0,)
    state.close()
    again = _state(tmp_path / "bob", "a long passphrase")
    record = again.sender_keys.load_sender_key(GROUP, ALICE)
    assert record is not None and len(record.chains) == MAX_SENDER_KEY_CHAINS
    with pytest.raises(NoSenderKeyError):
        GroupCipher(again.sender_keys).decrypt(ALICE, messages[0])
    again.close()

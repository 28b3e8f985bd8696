import msgpack
import pytest

from client.core.protocol_store import SqliteProtocolStore
from e2e_proto.address import Address
from e2e_proto.constants import MAX_REMEMBERED_BASE_KEYS, MAX_SKIP
from e2e_proto.errors import (
    BaseKeyReusedError,
    DecryptionError,
    DuplicateMessageError,
    InvalidSignatureError,
    NoSessionError,
    RemoteProtocolError,
    TooManySkippedError,
    UnknownPreKeyError,
    UnsupportedVersionError,
)
from e2e_proto.keys import PreKeyBundle
from e2e_proto.payload import Payload
from e2e_proto.session import process_prekey_bundle
from e2e_proto.session_record import MAX_PREVIOUS_SESSIONS, SessionRecord
from e2e_proto.wire import Envelope
from tests.helpers import connect, make_device


def wire(envelope: Envelope) -> Envelope:
    """Through the codec, as over the network."""
    return Envelope.decode(envelope.encode())


def test_prekey_messages_until_first_reply() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    first = [alice.cipher.encrypt(bob.address, b"m%d" % i) for i in range(3)]
    assert all(e.type == "prekey" for e in first)
    assert {e.prekey.one_time_prekey_id for e in first} == {100}
    assert bob.cipher.decrypt(wire(first[1])) == b"m1"
    assert bob.store.load_one_time_prekey(100) is None  # deleted after first use
    # Later prekey envelopes of the same session use the session that exists.
    assert bob.cipher.decrypt(wire(first[2])) == b"m2"
    assert bob.cipher.decrypt(wire(first[0])) == b"m0"
    reply = bob.cipher.encrypt(alice.address, b"reply")
    assert reply.type == "message"
    assert alice.cipher.decrypt(wire(reply)) == b"reply"
    assert alice.cipher.encrypt(bob.address, b"after").type == "message"


def test_replayed_prekey_message_is_refused() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    envelope = wire(alice.cipher.encrypt(bob.address, b"hello"))
    bob.cipher.decrypt(envelope)
    with pytest.raises(DuplicateMessageError):
        bob.cipher.decrypt(envelope)


def test_second_session_naming_a_used_opk_fails() -> None:
    alice, bob, carol = make_device("alice"), make_device("bob"), make_device("carol")
    bundle = bob.bundle()
    process_prekey_bundle(alice.store, bob.address, bundle)
    process_prekey_bundle(carol.store, bob.address, bundle)  # the same OPK handed out twice
    bob.cipher.decrypt(wire(alice.cipher.encrypt(bob.address, b"first")))
    with pytest.raises(UnknownPreKeyError):
        bob.cipher.decrypt(wire(carol.cipher.encrypt(bob.address, b"second")))
    assert bob.store.load_session(carol.address) is None


def test_unknown_signed_prekey_is_refused() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    spk = bob.signed_prekey
    bundle = PreKeyBundle(bob.identity.public_key, 1, spk.public_key, spk.signature)
    process_prekey_bundle(alice.store, bob.address, bundle)
    envelope = alice.cipher.encrypt(bob.address, b"x")
    bob.store._signed.clear()  # type: ignore[attr-defined]  # rotated away
    with pytest.raises(UnknownPreKeyError):
        bob.cipher.decrypt(envelope)


def test_session_without_opk() -> None:
    alice, bob = make_device("alice"), make_device("bob", opk_count=0)
    connect(alice, bob, with_opk=False)
    envelope = alice.cipher.encrypt(bob.address, b"no opk")
    assert envelope.prekey.one_time_prekey_id is None
    assert bob.cipher.decrypt(wire(envelope)) == b"no opk"


def test_forged_bundle_creates_no_session() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    good = bob.bundle()
    forged = PreKeyBundle(good.identity_key, good.signed_prekey_id, good.signed_prekey,
                          bytes(64), good.one_time_prekey_id, good.one_time_prekey)
    with pytest.raises(InvalidSignatureError):
        process_prekey_bundle(alice.store, bob.address, forged)
    assert alice.store.load_session(bob.address) is None


def test_encrypt_without_session() -> None:
    alice = make_device("alice")
    with pytest.raises(NoSessionError):
        alice.cipher.encrypt(Address("bob", 0), b"x")


def test_message_envelope_without_session() -> None:
    alice, bob, carol = make_device("alice"), make_device("bob"), make_device("carol")
    connect(alice, bob)
    bob.cipher.decrypt(alice.cipher.encrypt(bob.address, b"x"))
    reply = bob.cipher.encrypt(alice.address, b"y")
    with pytest.raises(NoSessionError):
        carol.cipher.decrypt(Envelope(reply.sender, carol.address, reply.message))


def test_tampered_envelope_changes_nothing() -> None:
    """Every flipped byte of the cryptographic fields fails and leaves bob's state as it was.

    The addresses are routing data, authenticated by the relay (the sender is the authenticated
    connection) rather than by the AEAD, so flips that only change an address are skipped here.
    """
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    original = alice.cipher.encrypt(bob.address, b"precious")
    encoded = original.encode()
    checked = 0
    for index in range(len(encoded)):
        flipped = bytearray(encoded)
        flipped[index] ^= 0x04
        try:
            envelope = Envelope.decode(bytes(flipped))
        except RemoteProtocolError:
            continue
        if (envelope.sender, envelope.recipient) != (original.sender, original.recipient):
            continue
        checked += 1
        with pytest.raises(RemoteProtocolError):
            bob.cipher.decrypt(envelope)
        assert bob.store.load_session(alice.address) is None
        assert bob.store.load_one_time_prekey(100) is not None
    assert checked > 150  # header, nonce, ciphertext and X3DH fields were all covered
    assert bob.cipher.decrypt(Envelope.decode(encoded)) == b"precious"


def test_sqlite_store_resumes_sessions(tmp_path) -> None:
    alice = make_device("alice", store=SqliteProtocolStore(tmp_path / "alice.db"))
    bob = make_device("bob", store=SqliteProtocolStore(tmp_path / "bob.db"))
    connect(alice, bob)
    pending = [alice.cipher.encrypt(bob.address, b"m%d" % i) for i in range(3)]
    bob.cipher.decrypt(pending[2])
    bob.store.close()
    reopened = SqliteProtocolStore(tmp_path / "bob.db")
    bob.store = reopened
    bob.cipher = type(bob.cipher)(reopened, bob.address)
    assert [bob.cipher.decrypt(pending[i]) for i in (0, 1)] == [b"m0", b"m1"]
    with pytest.raises(DuplicateMessageError):
        bob.cipher.decrypt(pending[2])
    assert alice.cipher.decrypt(bob.cipher.encrypt(alice.address, b"r")) == b"r"


def test_payload_through_a_session() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    payload = Payload.new("text", 1234, text="hello bob")
    envelope = alice.cipher.encrypt(bob.address, payload.encode())
    assert len(envelope.message.ciphertext) % 64 == 16  # padded, plus the tag
    assert Payload.decode(bob.cipher.decrypt(wire(envelope))) == payload


def test_simultaneous_initiation_converges() -> None:
    """Both sides make a session from the other's bundle at once; messages still flow."""
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    connect(bob, alice)
    from_alice = [alice.cipher.encrypt(bob.address, b"a%d" % i) for i in range(2)]
    from_bob = [bob.cipher.encrypt(alice.address, b"b%d" % i) for i in range(2)]
    assert [bob.cipher.decrypt(wire(e)) for e in from_alice] == [b"a0", b"a1"]
    assert [alice.cipher.decrypt(wire(e)) for e in from_bob] == [b"b0", b"b1"]
    for turn in range(6):  # whichever session each side now uses, the other can read it
        sender, receiver = (alice, bob) if turn % 2 == 0 else (bob, alice)
        envelope = sender.cipher.encrypt(receiver.address, b"turn %d" % turn)
        assert receiver.cipher.decrypt(wire(envelope)) == b"turn %d" % turn
    assert len(alice.store.load_session(bob.address).previous) <= 3


def test_earlier_session_is_kept_and_promoted() -> None:
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    first = alice.cipher.encrypt(bob.address, b"old session")
    bob.cipher.decrypt(wire(first))
    late = alice.cipher.encrypt(bob.address, b"late on the old session")
    connect(alice, bob)  # alice starts over (e.g. she lost the reply), old one kept behind
    fresh = alice.cipher.encrypt(bob.address, b"new session")
    assert bob.cipher.decrypt(wire(fresh)) == b"new session"
    assert bob.cipher.decrypt(wire(late)) == b"late on the old session"
    record = bob.store.load_session(alice.address)
    assert record.base_key == first.prekey.ephemeral_key.raw  # the old one was promoted
    assert [p.base_key for p in record.previous] == [fresh.prekey.ephemeral_key.raw]


def test_earlier_session_tried_after_any_refusal_of_the_current() -> None:
    """The current session refuses with TooManySkippedError; the earlier one can decrypt.

    Alice's chain on the first session is past MAX_SKIP when bob starts a second session, so
    her next message would make the second session skip more than MAX_SKIP keys: that is "not
    this session", not a reason to drop the message.
    """
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    hello = alice.cipher.encrypt(bob.address, b"hello")
    bob.cipher.decrypt(wire(hello))
    alice.cipher.decrypt(wire(bob.cipher.encrypt(alice.address, b"hi")))  # alice's turn again
    chain = [alice.cipher.encrypt(bob.address, b"n%d" % i) for i in range(MAX_SKIP + 2)]
    assert chain[-1].type == "message"
    for envelope in chain[:-1]:
        bob.cipher.decrypt(envelope)
    connect(bob, alice)  # bob starts over; the first session is kept behind the new one
    with pytest.raises(TooManySkippedError):  # what the new session alone says of it
        bob.store.load_session(alice.address).ratchet.decrypt(
            chain[-1].message, bob.store.load_session(alice.address).associated_data)
    assert bob.cipher.decrypt(wire(chain[-1])) == b"n%d" % (MAX_SKIP + 1)
    record = bob.store.load_session(alice.address)
    assert record.base_key == hello.prekey.ephemeral_key.raw  # the earlier one was promoted
    assert len(record.previous) == 1  # and the new one kept behind it


def test_a_replay_on_an_earlier_session_is_a_duplicate_whichever_session_is_current() -> None:
    """A redelivered message of the session now behind fails the current session's tag (its
    chain is unknown there) and is a replay on the earlier one: a duplicate, not unreadable.
    A tampered message that no session decrypts is still the first session's error."""
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    bob.cipher.decrypt(wire(alice.cipher.encrypt(bob.address, b"hello")))
    alice.cipher.decrypt(wire(bob.cipher.encrypt(alice.address, b"hi")))
    replayed = wire(alice.cipher.encrypt(bob.address, b"once"))
    assert replayed.type == "message"
    bob.cipher.decrypt(replayed)
    connect(bob, alice)  # the replay is now tried on the new session first, then the old one
    record = bob.store.load_session(alice.address)
    with pytest.raises(DecryptionError):  # what the new session alone says of it
        record.ratchet.decrypt(replayed.message, record.associated_data)
    before = bob.store.load_session(alice.address).to_bytes()
    with pytest.raises(DuplicateMessageError):
        bob.cipher.decrypt(replayed)
    assert bob.store.load_session(alice.address).to_bytes() == before
    sent = alice.cipher.encrypt(bob.address, b"tampered")
    message = sent.message._replace(ciphertext=bytes([sent.message.ciphertext[0] ^ 1])
                                    + sent.message.ciphertext[1:])
    with pytest.raises(DecryptionError):  # the current session's error, the first
        bob.cipher.decrypt(wire(sent._replace(message=message)))
    assert bob.store.load_session(alice.address).to_bytes() == before


def test_replayed_initial_message_of_a_dropped_session_is_refused() -> None:
    """Four newer sessions push the first out of the record; its replay is still refused."""
    alice, bob = make_device("alice", opk_count=0), make_device("bob", opk_count=0)
    connect(alice, bob, with_opk=False)
    first = wire(alice.cipher.encrypt(bob.address, b"first"))
    assert first.prekey.one_time_prekey_id is None  # nothing to use up: X3DH alone is replayable
    bob.cipher.decrypt(first)
    for i in range(MAX_PREVIOUS_SESSIONS + 1):
        connect(alice, bob, with_opk=False)
        bob.cipher.decrypt(wire(alice.cipher.encrypt(bob.address, b"session %d" % i)))
    record = bob.store.load_session(alice.address)
    kept = [record.base_key, *(p.base_key for p in record.previous)]
    assert first.prekey.ephemeral_key.raw not in kept
    before = record.to_bytes()
    with pytest.raises(BaseKeyReusedError) as caught:
        bob.cipher.decrypt(first)
    assert isinstance(caught.value, DuplicateMessageError)  # a replay, to every caller
    assert bob.store.load_session(alice.address).to_bytes() == before
    reply = bob.cipher.encrypt(alice.address, b"the current session still works")
    assert alice.cipher.decrypt(wire(reply)) == b"the current session still works"


def test_remembered_base_keys_are_bounded_and_survive_serialisation() -> None:
    alice, bob = make_device("alice", opk_count=0), make_device("bob", opk_count=0)
    sent = []
    for i in range(MAX_PREVIOUS_SESSIONS + MAX_REMEMBERED_BASE_KEYS + 3):
        connect(alice, bob, with_opk=False)
        envelope = wire(alice.cipher.encrypt(bob.address, b"%d" % i))
        bob.cipher.decrypt(envelope)
        sent.append(envelope)
    record = bob.store.load_session(alice.address)
    assert len(record.old_base_keys) == MAX_REMEMBERED_BASE_KEYS
    again = SessionRecord.from_bytes(record.to_bytes())
    assert again.old_base_keys == record.old_base_keys
    dropped = sent[: -(MAX_PREVIOUS_SESSIONS + 1)]
    assert [e.prekey.ephemeral_key.raw for e in reversed(dropped)][
        :MAX_REMEMBERED_BASE_KEYS] == record.old_base_keys  # newest first
    with pytest.raises(BaseKeyReusedError):
        bob.cipher.decrypt(dropped[-1])


def test_version_1_session_record_is_read_and_written_as_version_2() -> None:
    """A record stored before the base-key memory (version 1) still opens; it is rewritten as 2.

    The version 1 bytes are built here from the layout PROTOCOL.md §6.1 gave for version 1.
    """
    alice, bob = make_device("alice"), make_device("bob")
    connect(alice, bob)
    bob.cipher.decrypt(wire(alice.cipher.encrypt(bob.address, b"hello")))
    record = bob.store.load_session(alice.address)
    old = msgpack.packb([1, record.remote_identity.raw, record.associated_data,
                         record.ratchet.to_bytes(), record.base_key, None, []])
    migrated = SessionRecord.from_bytes(old)
    assert migrated.base_key == record.base_key and migrated.old_base_keys == []
    assert msgpack.unpackb(migrated.to_bytes())[0] == 2
    assert migrated.ratchet.to_bytes() == record.ratchet.to_bytes()
    with pytest.raises(UnsupportedVersionError):
        SessionRecord.from_bytes(msgpack.packb([3, *msgpack.unpackb(old)[1:]]))

"""Tests of e2e_proto.sender_keys, its wire codec and the group cipher (DESIGN §13)."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from e2e_proto import primitives, sender_keys
from e2e_proto.address import Address
from e2e_proto.constants import (
    GROUP_SIGNATURE_PREFIX,
    MAX_FRAME_SIZE,
    MAX_GROUP_HEADER_SIZE,
    MAX_SENDER_KEY_CHAINS,
    MAX_SENDER_KEY_FORWARD,
    MAX_SENDER_KEY_SKIPPED,
    SENDER_KEY_ITERATION_LIMIT,
)
from e2e_proto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidSignatureError,
    LocalProtocolError,
    MalformedError,
    NoSenderKeyError,
    RemoteProtocolError,
    SenderKeyConflictError,
    TooManySkippedError,
    UnsupportedVersionError,
)
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.payload import KNOWN_KINDS, SENDER_KEY_KIND, Payload
from e2e_proto.sender_keys import (
    OwnSenderKey,
    SenderKeyDistribution,
    SenderKeyMessage,
    SenderKeyRecord,
    decode_header,
    encode_header,
    signed_bytes,
)
from e2e_proto.stores import MemorySenderKeyStore
from e2e_proto.wire import decode_group_message, encode_group_message

GROUP = bytes(range(16))
OTHER_GROUP = bytes(range(1, 17))
ALICE = Address("alice", 0)
BOB = Address("bob", 1)


def pair(group: bytes = GROUP) -> tuple[OwnSenderKey, SenderKeyRecord]:
    """A sender's new key and a receiver that processed its distribution."""
    own = OwnSenderKey.create(group)
    record = SenderKeyRecord(group)
    assert record.process(own.distribution())
    return own, record


def skip(own: OwnSenderKey, count: int) -> None:
    for _ in range(count):
        own.next_sending_key()


def refused(record: SenderKeyRecord, message: SenderKeyMessage,
            error: type[Exception] = RemoteProtocolError) -> None:
    """``message`` raises ``error`` and leaves the record byte-for-byte as it was."""
    before = record.to_bytes()
    with pytest.raises(error):
        record.decrypt(message)
    assert record.to_bytes() == before


def flip(data: bytes, index: int, bit: int = 0x01) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= bit
    return bytes(flipped)


# -- chain, header, round trips ---------------------------------------------------------------


def test_round_trip_in_order() -> None:
    own, record = pair()
    for i in range(20):
        assert record.decrypt(own.encrypt(b"message %d" % i)) == b"message %d" % i
    chain = record.chains[own.chain_id]
    assert chain.iteration == own.iteration == 20
    assert chain.chain_key == own.chain_key and chain.skipped == {}


def test_chain_steps_are_hmac_of_the_chain_key() -> None:
    """mk = HMAC-SHA256(ck, 0x01), ck' = HMAC-SHA256(ck, 0x02), checked with the stdlib's hmac."""
    own = OwnSenderKey.create(GROUP)
    chain_key = own.chain_key
    for _ in range(3):
        message_key = hmac.new(chain_key, b"\x01", hashlib.sha256).digest()
        chain_key = hmac.new(chain_key, b"\x02", hashlib.sha256).digest()
        assert own.next_sending_key()[1] == message_key
    assert own.chain_key == chain_key


LAST_ITERATION = SENDER_KEY_ITERATION_LIMIT - 1


@pytest.mark.parametrize("iteration", [0, 127, 128, 255, 256, 65535, 65536, LAST_ITERATION])
@pytest.mark.parametrize("chain_id", [0, 200, 2**32 - 1])
def test_header_is_msgpack_of_group_chain_and_iteration(chain_id: int, iteration: int) -> None:
    own = OwnSenderKey(GROUP, chain_id, os.urandom(32), os.urandom(32), iteration)
    header, _ = own.next_sending_key()
    assert header == msgpack.packb([GROUP, chain_id, iteration], use_bin_type=True)
    assert header == encode_header(GROUP, chain_id, iteration)
    assert decode_header(header) == (GROUP, chain_id, iteration)
    assert len(header) <= MAX_GROUP_HEADER_SIZE


def test_the_last_iteration_ends_the_chain() -> None:
    own = OwnSenderKey(GROUP, 1, os.urandom(32), os.urandom(32), LAST_ITERATION)
    own.encrypt(b"last")
    with pytest.raises(LocalProtocolError):
        own.encrypt(b"one too many")
    with pytest.raises(MalformedError):
        decode_header(msgpack.packb([GROUP, 1, SENDER_KEY_ITERATION_LIMIT]))


@pytest.mark.parametrize("header", [
    b"", b"\xc1", msgpack.packb([GROUP, 1]), msgpack.packb([GROUP, 1, 2, 3]),
    msgpack.packb([GROUP[:15], 1, 0]), msgpack.packb([GROUP.hex(), 1, 0]),
    msgpack.packb([GROUP, -1, 0]), msgpack.packb([GROUP, 2**32, 0]),
    msgpack.packb([GROUP, 1, -1]), msgpack.packb([GROUP, True, 0]),
    msgpack.packb([GROUP, 1, 0]) + b"\x00", msgpack.packb({"g": GROUP}),
])
def test_malformed_headers(header: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_header(header)


_BIN16_GROUP = b"\xc5\x00\x10" + GROUP  # a non-shortest bin: 19 bytes instead of 18
_U32_CHAIN = b"\xce\x63\x99\xff\xd0"  # 1671036880, the shortest form of this chain id


@pytest.mark.parametrize(("header", "accepted"), [
    (b"\x93" + _BIN16_GROUP + _U32_CHAIN + b"\x01", True),  # 26 bytes
    (b"\x93\xc4\x10" + GROUP + b"\xcf" + bytes(4) + _U32_CHAIN[1:] + b"\x01", True),  # uint 64
    (b"\x93" + _BIN16_GROUP + _U32_CHAIN + b"\xce\x00\x00\x00\x01", False),  # 30 bytes
    (b"\xdc\x00\x03\xc4\x10" + GROUP + _U32_CHAIN + b"\xce\x00\x00\x00\x01", False),  # 31
])
def test_non_shortest_headers_are_accepted_only_within_the_size_cap(header: bytes,
                                                                     accepted: bool) -> None:
    """PROTOCOL.md §13.2: any msgpack form, but the 29-byte cap is checked first."""
    assert accepted == (len(header) <= MAX_GROUP_HEADER_SIZE)
    if accepted:
        assert decode_header(header) == (GROUP, 1671036880, 1)
    else:
        with pytest.raises(MalformedError):
            decode_header(header)


def test_signature_covers_prefix_header_nonce_ciphertext() -> None:
    own, _ = pair()
    message = own.encrypt(b"signed")
    expected = GROUP_SIGNATURE_PREFIX + message.header + message.nonce + message.ciphertext
    assert signed_bytes(message.header, message.nonce, message.ciphertext) == expected
    own.signing_pub.verify(expected, message.signature)
    seed_signature = primitives.ed25519_sign(primitives.ed25519_keypair(own.signing_seed)[1],
                                             expected)
    assert message.signature == seed_signature  # Ed25519 is deterministic


def test_ciphertext_is_xchacha_under_the_message_key_with_the_header_as_aad() -> None:
    own = OwnSenderKey.create(GROUP)
    message_key = hmac.new(own.chain_key, b"\x01", hashlib.sha256).digest()
    message = own.encrypt(b"aad is the header")
    assert primitives.aead_open(message.ciphertext, message.header, message.nonce,
                                message_key) == b"aad is the header"


def test_out_of_order_uses_skipped_keys_once() -> None:
    own, record = pair()
    messages = [own.encrypt(b"m%d" % i) for i in range(6)]
    chain = record.chains[own.chain_id]
    assert record.decrypt(messages[3]) == b"m3"
    assert sorted(chain.skipped) == [0, 1, 2]
    for i in (0, 5, 1, 4, 2):
        assert record.decrypt(messages[i]) == b"m%d" % i
    assert chain.skipped == {} and chain.iteration == 6
    for message in messages:
        refused(record, message, DuplicateMessageError)


def test_replays_are_duplicates_and_change_nothing() -> None:
    own, record = pair()
    messages = [own.encrypt(b"m%d" % i) for i in range(3)]
    record.decrypt(messages[2])
    record.decrypt(messages[0])
    refused(record, messages[2], DuplicateMessageError)
    refused(record, messages[0], DuplicateMessageError)
    assert record.decrypt(messages[1]) == b"m1"


# -- tampering, signers, unknown chains -------------------------------------------------------


@pytest.mark.parametrize("part", ["nonce", "ciphertext", "signature"])
def test_every_flipped_bit_of_a_signed_part_is_a_bad_signature(part: str) -> None:
    own, record = pair()
    message = own.encrypt(b"tamper with me" * 3)
    original = getattr(message, part)
    for index in range(len(original)):
        for bit in (0x01, 0x80):
            tampered = message._replace(**{part: flip(original, index, bit)})
            refused(record, tampered, InvalidSignatureError)
    assert record.decrypt(message) == b"tamper with me" * 3


def test_every_flipped_bit_of_the_header_is_refused() -> None:
    own, record = pair()
    message = own.encrypt(b"header")
    for index in range(len(message.header)):
        for bit in (0x01, 0x80):
            refused(record, message._replace(header=flip(message.header, index, bit)))
    assert record.decrypt(message) == b"header"


def test_a_header_naming_another_iteration_is_a_bad_signature() -> None:
    own, record = pair()
    message = own.encrypt(b"x")
    moved = message._replace(header=encode_header(GROUP, own.chain_id, 5))
    refused(record, moved, InvalidSignatureError)


def test_unsigned_and_wrongly_signed_messages() -> None:
    own, record = pair()
    message = own.encrypt(b"who sent this?")
    refused(record, message._replace(signature=bytes(64)), InvalidSignatureError)
    refused(record, message._replace(signature=b""), InvalidSignatureError)
    impostor = OwnSenderKey(GROUP, own.chain_id, own.chain_key, os.urandom(32), own.iteration)
    forged = impostor.encrypt(b"forged")
    refused(record, forged, InvalidSignatureError)  # right chain and keys, wrong signer
    _, other_secret = primitives.ed25519_keypair(os.urandom(32))
    resigned = message._replace(signature=primitives.ed25519_sign(
        other_secret, signed_bytes(message.header, message.nonce, message.ciphertext)))
    refused(record, resigned, InvalidSignatureError)
    assert record.decrypt(message) == b"who sent this?"


def test_a_signed_message_with_a_bad_tag_is_a_decryption_error() -> None:
    own, record = pair()
    wrong_chain = OwnSenderKey(GROUP, own.chain_id, os.urandom(32), own.signing_seed)
    refused(record, wrong_chain.encrypt(b"right signer, wrong chain key"), DecryptionError)
    assert record.decrypt(own.encrypt(b"still fine")) == b"still fine"


def test_the_signature_is_checked_before_any_key_is_derived(
        monkeypatch: pytest.MonkeyPatch) -> None:
    own, record = pair()
    skip(own, 100)
    ahead = own.encrypt(b"far")
    too_far = OwnSenderKey(GROUP, own.chain_id, own.chain_key, own.signing_seed,
                           MAX_SENDER_KEY_FORWARD + 10).encrypt(b"too far")

    def no_kdf(*args: object) -> Any:
        raise AssertionError("a key was derived before the signature was checked")

    monkeypatch.setattr(sender_keys, "_hmac_pair", no_kdf)
    monkeypatch.setattr(sender_keys, "_hmac", no_kdf)
    for message in (ahead, too_far):
        refused(record, message._replace(signature=flip(message.signature, 0)),
                InvalidSignatureError)


def test_unknown_chain_or_group() -> None:
    own, record = pair()
    stranger = OwnSenderKey.create(GROUP)
    refused(record, stranger.encrypt(b"never distributed"), NoSenderKeyError)
    elsewhere = OwnSenderKey(OTHER_GROUP, own.chain_id, own.chain_key, own.signing_seed)
    refused(record, elsewhere.encrypt(b"another group"), NoSenderKeyError)
    assert issubclass(NoSenderKeyError, RemoteProtocolError)


@pytest.mark.parametrize("nonce,ciphertext", [(b"n" * 23, b"c" * 16), (b"n" * 25, b"c" * 16),
                                              ("n" * 24, b"c" * 16), (b"n" * 24, "c" * 16)])
def test_malformed_nonce_or_ciphertext(nonce: Any, ciphertext: Any) -> None:
    own, record = pair()
    message = own.encrypt(b"x")
    refused(record, message._replace(nonce=nonce, ciphertext=ciphertext), MalformedError)


# -- limits -----------------------------------------------------------------------------------


def test_more_than_25000_ahead_is_refused_and_changes_nothing() -> None:
    own, record = pair()
    skip(own, MAX_SENDER_KEY_FORWARD + 1)
    refused(record, own.encrypt(b"too far"), TooManySkippedError)


def test_exactly_25000_ahead_keeps_only_the_newest_2000_keys() -> None:
    own, record = pair()
    early = own.encrypt(b"early")  # iteration 0
    skip(own, MAX_SENDER_KEY_FORWARD - MAX_SENDER_KEY_SKIPPED - 2)  # iterations 1 .. 22998
    evicted = own.encrypt(b"evicted")  # iteration 22999
    kept = own.encrypt(b"kept")  # iteration 23000
    skip(own, MAX_SENDER_KEY_SKIPPED - 2)
    last_skipped = own.encrypt(b"last skipped")  # iteration 24999
    edge = own.encrypt(b"edge")  # iteration 25000 = exactly MAX_SENDER_KEY_FORWARD ahead
    assert decode_header(edge.header)[2] == MAX_SENDER_KEY_FORWARD
    assert record.decrypt(edge) == b"edge"
    chain = record.chains[own.chain_id]
    assert len(chain.skipped) == MAX_SENDER_KEY_SKIPPED
    assert min(chain.skipped) == MAX_SENDER_KEY_FORWARD - MAX_SENDER_KEY_SKIPPED
    refused(record, early, DuplicateMessageError)
    refused(record, evicted, DuplicateMessageError)
    assert record.decrypt(kept) == b"kept"
    assert record.decrypt(last_skipped) == b"last skipped"


def test_skipped_keys_are_capped_oldest_first() -> None:
    own, record = pair()
    messages = [own.encrypt(b"%d" % i) for i in range(1500)]
    record.decrypt(messages[-1])  # skips 0..1498
    more = [own.encrypt(b"more %d" % i) for i in range(1000)]
    record.decrypt(more[-1])  # skips 999 more: 2498 kept would exceed 2000
    chain = record.chains[own.chain_id]
    assert len(chain.skipped) == MAX_SENDER_KEY_SKIPPED
    assert list(chain.skipped) == sorted(chain.skipped)
    assert min(chain.skipped) == 498
    refused(record, messages[497], DuplicateMessageError)
    assert record.decrypt(messages[498]) == b"498"
    assert record.decrypt(more[0]) == b"more 0"


def test_five_chains_per_sender_oldest_evicted() -> None:
    own, record = pair()
    keys = [own]
    for _ in range(MAX_SENDER_KEY_CHAINS):
        keys.append(keys[-1].rotate())
        assert record.process(keys[-1].distribution())
    assert list(record.chains) == [k.chain_id for k in keys[1:]]
    refused(record, keys[0].encrypt(b"evicted chain"), NoSenderKeyError)
    for key in keys[1:]:
        assert record.decrypt(key.encrypt(b"kept")) == b"kept"


def test_rotation_never_reuses_a_recent_chain_id() -> None:
    own = OwnSenderKey(GROUP, 7, os.urandom(32), os.urandom(32), 0, (1, 2, 3, 4))
    draws = [n.to_bytes(4, "big") for n in (7, 1, 4, 99)] + [os.urandom(32), os.urandom(32)]
    rotated = own.rotate(scripted(draws))
    assert rotated.chain_id == 99 and rotated.iteration == 0
    assert rotated.previous_chain_ids == (7, 1, 2, 3)
    assert rotated.group_id == GROUP and rotated.signing_pub != own.signing_pub


def scripted(values: list[bytes]) -> Callable[[int], bytes]:
    """A random source that hands out ``values`` in order."""
    stream = iter(values)

    def draw(size: int) -> bytes:
        value = next(stream)
        assert len(value) == size
        return value
    return draw


# -- distributions ----------------------------------------------------------------------------


def test_a_repeated_or_older_distribution_changes_nothing() -> None:
    own, record = pair()
    first = own.distribution()
    messages = [own.encrypt(b"m%d" % i) for i in range(3)]
    record.decrypt(messages[2])
    before = record.to_bytes()
    assert record.process(first) is False  # would roll the chain back to iteration 0
    assert record.process(own.distribution()) is False  # same iteration as held
    assert record.to_bytes() == before
    refused(record, messages[2], DuplicateMessageError)


def test_a_distribution_ahead_moves_the_chain_forward_keeping_the_gap() -> None:
    own, record = pair()
    in_flight = [own.encrypt(b"m%d" % i) for i in range(3)]
    ahead = own.distribution()
    assert record.process(ahead) is True
    chain = record.chains[own.chain_id]
    assert (chain.iteration, chain.chain_key) == (3, ahead.chain_key)
    assert [record.decrypt(m) for m in in_flight] == [b"m0", b"m1", b"m2"]
    assert record.decrypt(own.encrypt(b"next")) == b"next"


def test_a_distribution_far_ahead_jumps() -> None:
    own, record = pair()
    record.decrypt(own.encrypt(b"first"))
    skip(own, MAX_SENDER_KEY_FORWARD + 1)
    assert record.process(own.distribution()) is True
    chain = record.chains[own.chain_id]
    assert chain.iteration == own.iteration and chain.skipped == {}
    assert record.decrypt(own.encrypt(b"after the jump")) == b"after the jump"


@pytest.mark.parametrize("change", ["signing key", "chain key"])
def test_a_conflicting_distribution_is_refused(change: str) -> None:
    own, record = pair()
    record.decrypt(own.encrypt(b"first"))
    honest = own.distribution()
    skip(own, 5)
    if change == "signing key":
        conflicting = SenderKeyDistribution(GROUP, own.chain_id, honest.iteration,
                                            honest.chain_key,
                                            OwnSenderKey.create(GROUP).signing_pub)
    else:
        conflicting = SenderKeyDistribution(GROUP, own.chain_id, own.iteration, os.urandom(32),
                                            own.signing_pub)
    before = record.to_bytes()
    with pytest.raises(SenderKeyConflictError):
        record.process(conflicting)
    assert record.to_bytes() == before


def test_a_distribution_for_another_group_is_a_caller_error() -> None:
    own, record = pair()
    with pytest.raises(LocalProtocolError):
        record.process(OwnSenderKey.create(OTHER_GROUP).distribution())


def test_distribution_payload_round_trip() -> None:
    own, _ = pair()
    skip(own, 9)
    distribution = own.distribution()
    payload = distribution.to_payload(1_700_000_000_000)
    assert payload.kind == SENDER_KEY_KIND and SENDER_KEY_KIND in KNOWN_KINDS
    decoded = Payload.decode(payload.encode())
    assert decoded.known and set(decoded.fields) == {
        "group_id", "chain_id", "iteration", "chain_key", "signing_pub"}
    assert SenderKeyDistribution.from_payload(decoded) == distribution
    assert decoded.fields["signing_pub"] == own.signing_pub.raw
    assert repr(own.chain_key) not in repr(distribution)
    with pytest.raises(LocalProtocolError):
        SenderKeyDistribution.from_payload(Payload.new("text", 0, text="hi"))


def test_unknown_payload_kinds_are_still_kept() -> None:
    payload = Payload.decode(Payload.new("sender_key_v2", 0, x=1).encode())
    assert not payload.known and payload.fields == {"x": 1}


distributions = st.builds(
    SenderKeyDistribution, st.binary(min_size=16, max_size=16), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32),
    st.builds(Ed25519PublicKey, st.binary(min_size=32, max_size=32)))
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6)


@given(distributions)
def test_distribution_fields_round_trip(distribution: SenderKeyDistribution) -> None:
    fields = distribution.to_fields()
    assert SenderKeyDistribution.from_fields(msgpack.unpackb(msgpack.packb(fields))) \
        == distribution


@given(distributions, st.sampled_from(
    ["group_id", "chain_id", "iteration", "chain_key", "signing_pub"]), msgpack_values | st.just(
    "missing"))
@settings(max_examples=300)
def test_distribution_with_a_changed_field(distribution: SenderKeyDistribution, name: str,
                                           value: Any) -> None:
    fields = distribution.to_fields()
    if value == "missing":
        del fields[name]
    else:
        fields[name] = value
    try:
        decoded = SenderKeyDistribution.from_fields(fields)
    except MalformedError:
        assert value == "missing" or value != distribution.to_fields()[name]
    else:
        assert decoded.to_fields() == fields


@given(st.dictionaries(st.text(max_size=12), msgpack_values, max_size=7))
def test_distribution_from_arbitrary_fields(fields: dict[str, Any]) -> None:
    try:
        decoded = SenderKeyDistribution.from_fields(fields)
    except MalformedError:
        return
    assert decoded.to_fields() == {name: fields[name] for name in decoded.to_fields()}


def test_distribution_ignores_other_fields() -> None:
    distribution = OwnSenderKey.create(GROUP).distribution()
    assert SenderKeyDistribution.from_fields({**distribution.to_fields(), "later": 1}) \
        == distribution


# -- wire -------------------------------------------------------------------------------------


def test_group_message_wire_round_trip() -> None:
    own, record = pair()
    message = own.encrypt(b"on the wire")
    data = encode_group_message(message)
    assert msgpack.unpackb(data) == [1, *message]
    assert decode_group_message(data) == message
    assert record.decrypt(decode_group_message(data)) == b"on the wire"


def good_fields() -> list[Any]:
    own = OwnSenderKey(GROUP, 2**32 - 1, bytes(32), bytes(range(32)), LAST_ITERATION)
    return [1, *own.encrypt(b"x", lambda n: bytes(n))]


@pytest.mark.parametrize("data,error", [
    (b"", MalformedError), (b"\xc1", MalformedError), (msgpack.packb([]), MalformedError),
    (msgpack.packb({"v": 1}), MalformedError), (msgpack.packb(good_fields()) + b"\x00",
                                                MalformedError),
    (msgpack.packb([2, *good_fields()[1:]]), UnsupportedVersionError),
    (msgpack.packb(["1", *good_fields()[1:]]), UnsupportedVersionError),
    (msgpack.packb([True, *good_fields()[1:]]), UnsupportedVersionError),
    (msgpack.packb(good_fields()[:-1]), MalformedError),
    (msgpack.packb([*good_fields(), b""]), MalformedError),
    (msgpack.packb([1, b"h" * (MAX_GROUP_HEADER_SIZE + 1), *good_fields()[2:]]), MalformedError),
    (msgpack.packb([1, "header", *good_fields()[2:]]), MalformedError),
    (msgpack.packb([*good_fields()[:2], b"n" * 23, *good_fields()[3:]]), MalformedError),
    (msgpack.packb([*good_fields()[:3], b"c" * 15, good_fields()[4]]), MalformedError),
    (msgpack.packb([*good_fields()[:4], b"s" * 63]), MalformedError),
    (msgpack.packb([*good_fields()[:4], None]), MalformedError),
    (msgpack.packb([*good_fields()[:3], b"c" * MAX_FRAME_SIZE, good_fields()[4]]),
     MalformedError),
])
def test_malformed_group_messages(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_group_message(data)


def test_the_longest_header_fits_the_wire_bound() -> None:
    assert decode_group_message(msgpack.packb(good_fields())).header == good_fields()[1]
    assert len(good_fields()[1]) == MAX_GROUP_HEADER_SIZE


def test_an_oversized_group_message_is_not_encoded() -> None:
    own = OwnSenderKey.create(GROUP)
    with pytest.raises(LocalProtocolError):
        encode_group_message(own.encrypt(bytes(MAX_FRAME_SIZE)))


@given(msgpack_values)
@settings(max_examples=300)
def test_arbitrary_msgpack_is_a_typed_error_or_a_message(value: Any) -> None:
    try:
        message = decode_group_message(msgpack.packb(value))
    except (MalformedError, UnsupportedVersionError):
        return
    assert encode_group_message(message) == msgpack.packb(value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_typed_error(data: bytes) -> None:
    try:
        decode_group_message(data)
    except (MalformedError, UnsupportedVersionError):
        pass


# -- serialisation ----------------------------------------------------------------------------


def test_own_key_round_trip_sends_the_same_messages() -> None:
    own = OwnSenderKey.create(GROUP).rotate()
    skip(own, 3)
    copy = OwnSenderKey.from_bytes(own.to_bytes())
    assert copy.to_bytes() == own.to_bytes()
    nonce = os.urandom(24)
    assert copy.encrypt(b"same", lambda n: nonce) == own.encrypt(b"same", lambda n: nonce)


def test_record_round_trip_mid_conversation() -> None:
    own, record = pair()
    rotated = own.rotate()
    record.process(rotated.distribution())
    messages = [own.encrypt(b"m%d" % i) for i in range(5)]
    record.decrypt(messages[4])
    copy = SenderKeyRecord.from_bytes(record.to_bytes())
    assert copy.to_bytes() == record.to_bytes()
    assert list(copy.chains) == [own.chain_id, rotated.chain_id]
    assert [copy.decrypt(m) for m in messages[:4]] == [b"m0", b"m1", b"m2", b"m3"]
    assert copy.decrypt(rotated.encrypt(b"r")) == b"r"


def test_record_round_trip_with_the_skipped_keys_apart() -> None:
    """A store may keep each chain's skipped keys apart from the chains (PROTOCOL §13.6)."""
    own, record = pair()
    rotated = own.rotate()
    record.process(rotated.distribution())
    messages = [own.encrypt(b"m%d" % i) for i in range(5)]
    record.decrypt(messages[4])
    apart = {i: c.skipped_to_bytes() for i, c in record.chains.items() if c.skipped}
    assert list(apart) == [own.chain_id]
    assert msgpack.unpackb(record.to_bytes(skipped=False))[2][0][4] == []
    copy = SenderKeyRecord.from_bytes(record.to_bytes(skipped=False), apart)
    assert copy.to_bytes() == record.to_bytes()
    assert [copy.decrypt(m) for m in messages[:4]] == [b"m0", b"m1", b"m2", b"m3"]
    chains = record.to_bytes(skipped=False)
    for bad in ({**apart, 7: apart[own.chain_id]}, {own.chain_id: b"\xc1"},
                {own.chain_id: msgpack.packb([[9, bytes(32)]])}):  # not behind the chain
        with pytest.raises(MalformedError):
            SenderKeyRecord.from_bytes(chains, bad)
    with pytest.raises(MalformedError):  # both in the chain and apart
        SenderKeyRecord.from_bytes(record.to_bytes(), apart)


def test_skipped_keys_are_replaced_never_changed_in_place() -> None:
    """What lets a store tell by identity whether a chain's skipped keys changed."""
    own, record = pair()
    messages = [own.encrypt(b"m%d" % i) for i in range(6)]
    chain = record.chains[own.chain_id]
    empty = chain.skipped
    record.decrypt(messages[3])
    three = chain.skipped
    assert empty == {} and sorted(three) == [0, 1, 2]
    record.decrypt(messages[4])  # in order: the same mapping
    assert chain.skipped is three
    refused(record, messages[3], DuplicateMessageError)
    assert chain.skipped is three
    record.decrypt(messages[1])
    assert sorted(chain.skipped) == [0, 2] and sorted(three) == [0, 1, 2]


def record_fields() -> list[Any]:
    own, record = pair()
    record.decrypt(own.encrypt(b"x", lambda n: bytes(n)))
    skip(own, 2)
    record.decrypt(own.encrypt(b"y"))
    return msgpack.unpackb(record.to_bytes())


def with_chain(change: Callable[[list[Any]], None]) -> bytes:
    fields = record_fields()
    change(fields[2][0])
    return msgpack.packb(fields)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x90", msgpack.packb([1]), msgpack.packb([1, GROUP]),
    msgpack.packb([1, GROUP[:15], []]), msgpack.packb([1, GROUP, {}]),
    msgpack.packb([1, GROUP, [record_fields()[2][0]] * 2]),  # the same chain id twice
    msgpack.packb([1, GROUP, [[i, 0, bytes(32), bytes(32), []] for i in range(6)]]),
    with_chain(lambda c: c.__setitem__(0, -1)), with_chain(lambda c: c.__setitem__(1, 2**32)),
    with_chain(lambda c: c.__setitem__(2, bytes(31))),
    with_chain(lambda c: c.__setitem__(3, bytes(33))),
    with_chain(lambda c: c[4].append([1, bytes(32)])),  # not ascending
    with_chain(lambda c: c[4].append([c[1], bytes(32)])),  # not behind the chain
    with_chain(lambda c: c.__setitem__(4, [[i, bytes(32)] for i in range(2001)])),
    with_chain(lambda c: c[4][0].__setitem__(1, None)),
])
def test_bad_record_bytes(data: bytes) -> None:
    with pytest.raises(MalformedError):
        SenderKeyRecord.from_bytes(data)


@pytest.mark.parametrize("fields", [
    [1, GROUP, 1, 0, bytes(32)], [1, GROUP, 1, 0, bytes(32), bytes(31), []],
    [1, GROUP, 1, -1, bytes(32), bytes(32), []], [1, GROUP, 1, 0, bytes(32), bytes(32), None],
    [1, GROUP, 1, 0, bytes(32), bytes(32), [1]], [1, GROUP, 1, 0, bytes(32), bytes(32), [2] * 2],
    [1, GROUP, 1, 0, bytes(32), bytes(32), [2, 3, 4, 5, 6]], [1, 5, 1, 0, bytes(32), bytes(32), []],
])
def test_bad_own_key_bytes(fields: list[Any]) -> None:
    with pytest.raises(MalformedError):
        OwnSenderKey.from_bytes(msgpack.packb(fields))


@pytest.mark.parametrize("load", [OwnSenderKey.from_bytes, SenderKeyRecord.from_bytes])
def test_unknown_state_version(load: Callable[[bytes], object]) -> None:
    with pytest.raises(UnsupportedVersionError):
        load(msgpack.packb([2, GROUP, []]))


@given(st.binary(max_size=120) | msgpack_values.map(msgpack.packb))
def test_arbitrary_state_bytes_are_a_typed_error(data: bytes) -> None:
    for load in (OwnSenderKey.from_bytes, SenderKeyRecord.from_bytes):
        try:
            load(data)
        except (MalformedError, UnsupportedVersionError):
            pass


# -- the group cipher over a store ------------------------------------------------------------


def test_group_cipher_end_to_end() -> None:
    alice, bob = GroupCipher(MemorySenderKeyStore()), GroupCipher(MemorySenderKeyStore())
    with pytest.raises(LocalProtocolError):
        alice.encrypt(GROUP, b"before any sender key")
    payload = alice.distribution(GROUP).to_payload(0).encode()  # over the pairwise session
    assert bob.process(ALICE, SenderKeyDistribution.from_payload(Payload.decode(payload)))
    for text in (b"hello group", b"second"):
        wire = encode_group_message(alice.encrypt(GROUP, text))
        assert bob.decrypt(ALICE, decode_group_message(wire)) == text
    with pytest.raises(NoSenderKeyError):
        bob.decrypt(BOB, decode_group_message(wire))  # nothing received from that sender
    assert alice.distribution(GROUP).iteration == 2


def test_group_cipher_rotation() -> None:
    alice, bob = GroupCipher(MemorySenderKeyStore()), GroupCipher(MemorySenderKeyStore())
    first = alice.distribution(GROUP)
    bob.process(ALICE, first)
    late = alice.encrypt(GROUP, b"sent before the rotation")
    second = alice.rotate(GROUP)
    assert second.chain_id != first.chain_id and second.iteration == 0
    assert bob.process(ALICE, second) and not bob.process(ALICE, second)
    assert bob.decrypt(ALICE, alice.encrypt(GROUP, b"new chain")) == b"new chain"
    assert bob.decrypt(ALICE, late) == b"sent before the rotation"
    assert GroupCipher(MemorySenderKeyStore()).rotate(OTHER_GROUP).iteration == 0


def test_group_cipher_failure_stores_nothing() -> None:
    store = MemorySenderKeyStore()
    alice, bob = GroupCipher(MemorySenderKeyStore()), GroupCipher(store)
    bob.process(ALICE, alice.distribution(GROUP))
    message = alice.encrypt(GROUP, b"x")
    before = store.load_sender_key(GROUP, ALICE).to_bytes()
    with pytest.raises(InvalidSignatureError):
        bob.decrypt(ALICE, message._replace(signature=bytes(64)))
    with pytest.raises(SenderKeyConflictError):
        bob.process(ALICE, SenderKeyDistribution(GROUP, alice.distribution(GROUP).chain_id, 0,
                                                 bytes(32), OwnSenderKey.create(GROUP)
                                                 .signing_pub))
    assert store.load_sender_key(GROUP, ALICE).to_bytes() == before


def test_memory_store_keys_by_group_and_sender() -> None:
    store = MemorySenderKeyStore()
    own = OwnSenderKey.create(GROUP)
    store.store_own_sender_key(own)
    assert store.load_own_sender_key(GROUP) is own
    assert store.load_own_sender_key(OTHER_GROUP) is None
    record = SenderKeyRecord(GROUP)
    store.store_sender_key(ALICE, record)
    assert store.load_sender_key(GROUP, ALICE) is record
    assert store.load_sender_key(GROUP, BOB) is None
    assert store.load_sender_key(OTHER_GROUP, ALICE) is None


# -- random delivery --------------------------------------------------------------------------


class GroupDelivery(RuleBasedStateMachine):
    """One sender, one receiver: sends, deliveries in any order, drops, replays, tampering,
    rotations (the distribution arrives at once over the pairwise session), stale
    distributions and reloads of both sides from their bytes.

    Invariants: a message decrypts exactly once, to what was sent, while its chain is one of
    the five newest; otherwise it is refused with a typed error; every failure leaves the
    receiver's bytes unchanged; the bounds on chains and skipped keys hold.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sender, self.receiver = pair()
        self.chains = [self.sender.chain_id]  # distributed chain ids, oldest first
        self.distributions = [self.sender.distribution()]
        self.in_flight: list[tuple[SenderKeyMessage, bytes]] = []
        self.delivered: list[SenderKeyMessage] = []
        self.counter = 0

    def held(self, message: SenderKeyMessage) -> bool:
        return decode_header(message.header)[1] in self.chains[-MAX_SENDER_KEY_CHAINS:]

    def unchanged_after(self, message: SenderKeyMessage, error: type[Exception]) -> None:
        refused(self.receiver, message, error)

    @rule(count=st.integers(1, 4))
    def send(self, count: int) -> None:
        for _ in range(count):
            text = b"message %d" % self.counter
            self.counter += 1
            self.in_flight.append((self.sender.encrypt(text), text))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        message, text = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        if self.held(message):
            assert self.receiver.decrypt(message) == text
            self.delivered.append(message)
        else:
            self.unchanged_after(message, NoSenderKeyError)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        message = data.draw(st.sampled_from(self.delivered))
        self.unchanged_after(message, DuplicateMessageError if self.held(message)
                             else NoSenderKeyError)

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), part=st.sampled_from(["header", "nonce", "ciphertext", "signature"]))
    def tamper(self, data: st.DataObject, part: str) -> None:
        message, _ = data.draw(st.sampled_from(self.in_flight))
        original = getattr(message, part)
        tampered = message._replace(**{part: flip(
            original, data.draw(st.integers(0, len(original) - 1)), 0x04)})
        self.unchanged_after(tampered, RemoteProtocolError)

    @rule()
    def rotate(self) -> None:
        self.sender = self.sender.rotate()
        self.chains.append(self.sender.chain_id)
        self.distributions.append(self.sender.distribution())
        assert self.receiver.process(self.distributions[-1])

    @rule(data=st.data())
    def stale_distribution(self, data: st.DataObject) -> None:
        held = self.chains[-MAX_SENDER_KEY_CHAINS:]
        distribution = data.draw(st.sampled_from(
            [d for d in self.distributions if d.chain_id in held]))
        before = self.receiver.to_bytes()
        assert self.receiver.process(distribution) is False
        assert self.receiver.to_bytes() == before

    @rule()
    def reload(self) -> None:
        self.sender = OwnSenderKey.from_bytes(self.sender.to_bytes())
        self.receiver = SenderKeyRecord.from_bytes(self.receiver.to_bytes())

    @invariant()
    def bounded(self) -> None:
        assert list(self.receiver.chains) == self.chains[-MAX_SENDER_KEY_CHAINS:]
        for chain in self.receiver.chains.values():
            assert len(chain.skipped) <= MAX_SENDER_KEY_SKIPPED


GroupDelivery.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                           deadline=None)
TestGroupDelivery = GroupDelivery.TestCase

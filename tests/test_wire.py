"""Tests of e2e_proto.wire: envelopes (DESIGN §5) and length-prefixed msgpack frames (§8)."""

from __future__ import annotations

import json
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_proto import errors, social_api
from e2e_proto import relay_api as api
from e2e_proto.address import ACCOUNT_PATTERN, Address
from e2e_proto.blob_api import BLOB_CHUNK_SIZE, MAX_BLOBS_PER_MESSAGE
from e2e_proto.constants import (
    DEVICE_LIST_PREFIX,
    MAX_DEVICE_ID,
    MAX_DEVICES,
    MAX_FRAME_SIZE,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_STATE_SIZE,
)
from e2e_proto.devices import SignedDeviceList
from e2e_proto.errors import (
    E2EProtoError,
    FrameTooLargeError,
    LocalProtocolError,
    MalformedError,
)
from e2e_proto.groups import GroupState, GroupUpdate
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair, X25519PublicKey
from e2e_proto.payload import Payload, pad
from e2e_proto.ratchet import RatchetMessage, decode_header
from e2e_proto.sender_keys import OwnSenderKey
from e2e_proto.sender_keys import decode_header as decode_group_header
from e2e_proto.unpack import FRAME_LIMITS, UnpackLimits
from e2e_proto.wire import (
    ENVELOPE_LIMITS,
    MESSAGE,
    PREKEY,
    Envelope,
    FrameDecoder,
    GroupEnvelope,
    PreKeyHeader,
    decode_delivery,
    decode_frame_body,
    decode_group_message,
    encode_frame,
    encode_group_message,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "envelope.json").read_text())

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------------

accounts = st.from_regex(ACCOUNT_PATTERN, fullmatch=True)
device_ids = st.integers(0, MAX_DEVICE_ID)
addresses = st.builds(Address, accounts, device_ids)
u32s = st.integers(0, 2**32 - 1)
msgpack_ints = st.integers(-(2**63), 2**64 - 1)
ratchet_messages = st.builds(
    RatchetMessage,
    st.binary(max_size=80),
    st.binary(min_size=24, max_size=24),
    st.binary(min_size=16, max_size=200),
)
prekey_headers = st.builds(
    PreKeyHeader,
    st.binary(min_size=32, max_size=32).map(Ed25519PublicKey),
    st.binary(min_size=32, max_size=32).map(X25519PublicKey),
    u32s,
    st.none() | u32s,
)
message_envelopes = st.builds(Envelope, addresses, addresses, ratchet_messages, st.none())
prekey_envelopes = st.builds(Envelope, addresses, addresses, ratchet_messages, prekey_headers)
envelopes = message_envelopes | prekey_envelopes

# Frame maps: str keys; values msgpack round-trips to equal Python values (lists, not tuples).
frame_leaves = (
    st.none() | st.booleans() | msgpack_ints
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20)
)
frame_values = st.recursive(
    frame_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
frame_maps = st.dictionaries(st.text(max_size=10), frame_values, max_size=6)


# -- helpers ----------------------------------------------------------------------------------


def feed_in_chunks(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> list[dict[str, Any]]:
    """Feed ``data`` in chunks of the given sizes (cycled), draining frames after each chunk."""
    frames: list[dict[str, Any]] = []
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)] if sizes else 1
        decoder.feed(data[position:position + size])
        position += size
        index += 1
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    return frames


def drain_all(decoder: FrameDecoder, data: bytes, sizes: list[int]) -> None:
    """Feed and drain like a connection loop would, stopping at the first (typed) error."""
    try:
        feed_in_chunks(decoder, data, sizes)
    except E2EProtoError:
        return


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    """Apply flip / truncate / insert / delete operations to ``data``."""
    buf = bytearray(data)
    for op, position, value in ops:
        at = position % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= value or 1
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = bytes([value])
        elif op == "delete" and buf:
            del buf[at % len(buf)]
    return bytes(buf)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete"]),
              st.integers(0, 2**16), st.integers(0, 255)),
    min_size=1, max_size=4,
)


def nested_arrays(depth: int) -> bytes:
    """``depth`` nested one-element msgpack arrays around nil."""
    return b"\x91" * depth + b"\xc0"


def array_depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        assert len(value) == 1
        value, depth = value[0], depth + 1
    assert value is None
    return depth


# -- envelopes --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(envelopes)
def test_envelope_round_trip(envelope: Envelope) -> None:
    encoded = envelope.encode()
    decoded = Envelope.decode(encoded)
    assert decoded == envelope
    assert decoded.type == (MESSAGE if envelope.prekey is None else PREKEY)
    assert decoded.encode() == encoded


@settings(max_examples=50, deadline=None)
@given(prekey_envelopes)
def test_prekey_envelope_layout(envelope: Envelope) -> None:
    fields = msgpack.unpackb(envelope.encode())
    assert envelope.prekey is not None
    assert fields[0] == 1 and fields[1] == "prekey" and len(fields) == 13
    assert fields[2:6] == [envelope.sender.account, envelope.sender.device_id,
                           envelope.recipient.account, envelope.recipient.device_id]
    assert fields[6:9] == list(envelope.message)
    assert fields[9:] == [envelope.prekey.identity_key.raw, envelope.prekey.ephemeral_key.raw,
                          envelope.prekey.signed_prekey_id, envelope.prekey.one_time_prekey_id]


@settings(max_examples=50, deadline=None)
@given(message_envelopes)
def test_message_envelope_layout(envelope: Envelope) -> None:
    fields = msgpack.unpackb(envelope.encode())
    assert fields[:2] == [1, "message"] and len(fields) == 9
    assert fields[6:] == list(envelope.message)


def test_envelope_boundaries_round_trip() -> None:
    message = RatchetMessage(b"", bytes(24), bytes(16))
    for sender, recipient in [(Address("a", 0), Address("z" * 64, MAX_DEVICE_ID)),
                              (Address("0._-", MAX_DEVICE_ID), Address("9", 0))]:
        prekey = PreKeyHeader(Ed25519PublicKey(bytes(32)), X25519PublicKey(b"\xff" * 32),
                              2**32 - 1, 0)
        for envelope in (Envelope(sender, recipient, message),
                         Envelope(sender, recipient, message, prekey)):
            assert Envelope.decode(envelope.encode()) == envelope


@pytest.mark.parametrize("case", VECTORS["envelopes"],
                         ids=lambda c: f"{c['fields']['type']}-{c['fields']['sender_account']}")
def test_envelope_vectors(case: dict[str, Any]) -> None:
    encoded = bytes.fromhex(case["encoded"])
    fields = case["fields"]
    envelope = Envelope.decode(encoded)
    assert envelope.type == fields["type"]
    assert envelope.sender == Address(fields["sender_account"], fields["sender_device"])
    assert envelope.recipient == Address(fields["recipient_account"], fields["recipient_device"])
    assert envelope.message == RatchetMessage(bytes.fromhex(fields["header"]),
                                              bytes.fromhex(fields["nonce"]),
                                              bytes.fromhex(fields["ciphertext"]))
    if fields["type"] == "prekey":
        assert envelope.prekey == PreKeyHeader(
            Ed25519PublicKey(bytes.fromhex(fields["identity_key"])),
            X25519PublicKey(bytes.fromhex(fields["ephemeral_key"])),
            fields["signed_prekey_id"], fields["one_time_prekey_id"])
    else:
        assert envelope.prekey is None
    assert envelope.encode() == encoded


# -- malformed vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=lambda c: c["name"])
def test_malformed_vectors_raise_the_named_error(case: dict[str, Any]) -> None:
    expected = getattr(errors, case["error"])
    data = bytes.fromhex(case["input"])
    with pytest.raises(E2EProtoError) as info:
        if case["kind"] == "envelope":
            Envelope.decode(data)
        else:
            assert case["kind"] == "frame"
            decoder = FrameDecoder(VECTORS["max_frame_size"])
            decoder.feed(data)
            decoder.next_frame()
    assert type(info.value) is expected


def test_malformed_vectors_cover_both_kinds() -> None:
    kinds = {case["kind"] for case in VECTORS["malformed"]}
    assert kinds == {"envelope", "frame"}
    assert VECTORS["max_frame_size"] == MAX_FRAME_SIZE


# -- envelope fuzzing -------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_envelope_decode_random_bytes(data: bytes) -> None:
    try:
        envelope = Envelope.decode(data)
    except E2EProtoError:
        return
    assert Envelope.decode(envelope.encode()) == envelope


@FUZZ
@given(envelopes, mutations)
def test_envelope_decode_mutated(envelope: Envelope, ops: list[tuple[str, int, int]]) -> None:
    data = mutate(envelope.encode(), ops)
    try:
        decoded = Envelope.decode(data)
    except E2EProtoError:
        return
    assert Envelope.decode(decoded.encode()) == decoded


@FUZZ
@given(st.lists(st.one_of(
    st.none(), st.booleans(), msgpack_ints, st.floats(),
    st.text(max_size=10), st.binary(max_size=40),
    st.lists(msgpack_ints, max_size=2),
    st.dictionaries(st.text(max_size=3), msgpack_ints, max_size=2),
), max_size=14))
def test_envelope_decode_wrongly_typed_fields(fields: list[Any]) -> None:
    # Random arrays of msgpack values: mostly the right shape with the wrong types.
    for value in (fields, [1, "message", *fields], [1, "prekey", *fields]):
        try:
            envelope = Envelope.decode(msgpack.packb(value))
        except E2EProtoError:
            continue
        assert Envelope.decode(envelope.encode()) == envelope


@pytest.mark.parametrize("depth", [10, 500, 10_000, 100_000])
def test_envelope_deep_nesting_is_an_error(depth: int) -> None:
    # A deep value in the sender-account slot of an otherwise valid message envelope.
    tail = msgpack.packb(["bob", 3, b"h", bytes(24), bytes(16)])[1:]
    data = b"\x99\x01\xa7message" + nested_arrays(depth) + b"\x00" + tail
    with pytest.raises(MalformedError):
        Envelope.decode(data)
    with pytest.raises(E2EProtoError):
        Envelope.decode(nested_arrays(depth))


@pytest.mark.parametrize(("prefix", "error"), [
    (b"", MalformedError), (b"\x92\x01", MalformedError),
], ids=["version-slot", "type-slot"])
@pytest.mark.parametrize("depth", [1000, 1023])
def test_envelope_nesting_near_msgpack_limit_is_an_error(prefix: bytes, error: type[Exception],
                                                         depth: int) -> None:
    # Regression: parses within msgpack's 1024-level limit, and the error message used to
    # repr() the value, raising RecursionError instead of a typed error. Since ENVELOPE_LIMITS
    # (one flat array) the nesting is refused while unpacking, in either slot.
    with pytest.raises(error):
        Envelope.decode(prefix + nested_arrays(depth))


# -- frames -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(frame_maps, min_size=1, max_size=4),
       st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_frames_round_trip_in_random_chunks(maps: list[dict[str, Any]], sizes: list[int]) -> None:
    stream = b"".join(encode_frame(m) for m in maps)
    assert feed_in_chunks(FrameDecoder(), stream, sizes) == maps


@settings(max_examples=25, deadline=None)
@given(st.lists(frame_maps, min_size=1, max_size=3))
def test_frames_round_trip_one_byte_at_a_time(maps: list[dict[str, Any]]) -> None:
    stream = b"".join(encode_frame(m) for m in maps)
    assert feed_in_chunks(FrameDecoder(), stream, [1]) == maps
    assert feed_in_chunks(FrameDecoder(), stream, [len(stream)]) == maps


@pytest.mark.parametrize("case", VECTORS["frames"], ids=lambda c: str(c["decoded"].get("type")))
def test_frame_vectors(case: dict[str, Any]) -> None:
    encoded = bytes.fromhex(case["encoded"])
    decoder = FrameDecoder()
    decoder.feed(encoded)
    frame = decoder.next_frame()
    assert frame is not None and decoder.next_frame() is None
    assert encode_frame(frame) == encoded
    assert struct.unpack(">I", encoded[:4])[0] == len(encoded) - 4


def test_encode_frame_layout() -> None:
    frame = encode_frame({"id": 1, "type": "ping"})
    body = msgpack.packb({"id": 1, "type": "ping"})
    assert frame == len(body).to_bytes(4, "big") + body
    assert decode_frame_body(body) == {"id": 1, "type": "ping"}


@pytest.mark.parametrize("body", [
    pytest.param(msgpack.packb({b"k": 1}), id="bytes-key"),
    pytest.param(msgpack.packb({"k": 1, b"b": 2}), id="mixed-keys"),
    pytest.param(msgpack.packb([["k", 1]]), id="array"),
    pytest.param(msgpack.packb("k"), id="str"),
    pytest.param(b"", id="empty"),
    pytest.param(msgpack.packb({"k": 1}) + b"\x00", id="trailing-bytes"),
])
def test_frame_body_must_be_a_str_keyed_map(body: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_frame_body(body)
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(MalformedError):
        decoder.next_frame()


def test_buffered_counts_the_incomplete_frame() -> None:
    frame = encode_frame({"k": "v" * 10})
    decoder = FrameDecoder()
    assert decoder.buffered == 0
    for fed in range(1, len(frame)):
        decoder.feed(frame[fed - 1:fed])
        assert decoder.next_frame() is None
        assert decoder.buffered == fed
    decoder.feed(frame[-1:])
    assert decoder.next_frame() == {"k": "v" * 10}
    assert decoder.buffered == 0


@pytest.mark.parametrize("max_size", [0, 10, 1000, MAX_FRAME_SIZE])
def test_oversized_length_rejected_once_the_prefix_arrives(max_size: int) -> None:
    decoder = FrameDecoder(max_size)
    prefix = (max_size + 1).to_bytes(4, "big")
    for byte in prefix[:3]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(prefix[3:])  # no body byte has been fed
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_largest_length_prefix_rejected() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_frame_of_exactly_max_size_is_accepted() -> None:
    message = {"k": "x" * 100}
    body_size = len(msgpack.packb(message))
    frame = encode_frame(message, max_size=body_size)
    decoder = FrameDecoder(body_size)
    decoder.feed(frame)
    assert decoder.next_frame() == message
    too_small = FrameDecoder(body_size - 1)
    too_small.feed(frame[:4])
    with pytest.raises(FrameTooLargeError):
        too_small.next_frame()


def test_decoder_refuses_feed_after_frame_too_large() -> None:
    decoder = FrameDecoder(16)
    decoder.feed((17).to_bytes(4, "big"))
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()
    with pytest.raises(LocalProtocolError):
        decoder.feed(b"\x00" * 17)
    with pytest.raises(E2EProtoError):
        decoder.next_frame()


def test_decoder_refuses_feed_after_malformed_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(MalformedError):
        decoder.next_frame()
    with pytest.raises(LocalProtocolError):
        decoder.feed(encode_frame({"id": 1}))


def test_decoder_refuses_next_frame_after_malformed_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00\x00\x01\xc1" + encode_frame({"id": 2}))
    with pytest.raises(MalformedError):
        decoder.next_frame()
    with pytest.raises(E2EProtoError):
        decoder.next_frame()


@pytest.mark.parametrize("max_size", [0, 5, 100])
def test_encode_frame_refuses_oversized_body(max_size: int) -> None:
    message = {"k": b"x" * max_size}
    with pytest.raises(LocalProtocolError):
        encode_frame(message, max_size=max_size)
    assert len(encode_frame(message, max_size=max_size + 10)) > max_size


def test_encode_frame_limit_is_exact() -> None:
    message = {"k": b"x" * 50}
    size = len(msgpack.packb(message))
    assert len(encode_frame(message, max_size=size)) == size + 4
    with pytest.raises(LocalProtocolError):
        encode_frame(message, max_size=size - 1)


def test_encode_frame_refuses_default_oversized_body() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"blob": bytes(MAX_FRAME_SIZE)})


def test_encode_frame_refuses_unencodable_value() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"k": object()})


@pytest.mark.parametrize("key", [1, b"k"], ids=["int", "bytes"])
def test_encode_frame_refuses_non_str_keys(key: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"ok": 1, key: "x"})


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_encode_frame_refuses_out_of_range_int(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"n": value})


# -- frame fuzzing ----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 32), min_size=1, max_size=5),
       st.sampled_from([0, 16, 256, MAX_FRAME_SIZE]))
def test_frame_decoder_random_bytes(data: bytes, sizes: list[int], max_size: int) -> None:
    drain_all(FrameDecoder(max_size), data, sizes)


@FUZZ
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4),
       st.lists(st.integers(1, 32), min_size=1, max_size=5))
def test_frame_decoder_random_bodies(bodies: list[bytes], sizes: list[int]) -> None:
    # Correct length prefixes around random bodies: exercises the body decoder, not the limit.
    stream = b"".join(struct.pack(">I", len(body)) + body for body in bodies)
    drain_all(FrameDecoder(), stream, sizes)
    for body in bodies:
        try:
            frame = decode_frame_body(body)
        except MalformedError:
            continue
        assert all(type(key) is str for key in frame)


@settings(max_examples=60, deadline=None)
@given(st.lists(frame_maps, min_size=1, max_size=3), mutations,
       st.lists(st.integers(1, 32), min_size=1, max_size=5))
def test_frame_decoder_mutated_frames(maps: list[dict[str, Any]],
                                      ops: list[tuple[str, int, int]], sizes: list[int]) -> None:
    stream = mutate(b"".join(encode_frame(m) for m in maps), ops)
    drain_all(FrameDecoder(), stream, sizes)


@FUZZ
@given(envelopes, mutations)
def test_frame_body_mutated_envelope(envelope: Envelope, ops: list[tuple[str, int, int]]) -> None:
    body = mutate(msgpack.packb({"envelope": envelope.encode()}), ops)
    try:
        decode_frame_body(body)
    except MalformedError:
        pass


@pytest.mark.parametrize("depth", [10, 1000, 1023, 10_000, 100_000])
def test_frame_deep_nesting(depth: int) -> None:
    body = b"\x81\xa1a" + nested_arrays(depth)
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(body)) + body)
    try:
        frame = decoder.next_frame()
    except MalformedError:
        return
    assert frame is not None and array_depth(frame["a"]) == depth


def test_frame_deep_nesting_of_maps() -> None:
    body = b"\x81\xa1a" * 10_000 + b"\xc0"
    with pytest.raises(MalformedError):
        decode_frame_body(body)


# -- bounded unpacking (issue 11) -------------------------------------------------------------

WIDE = msgpack.packb({"a": [[]] * 1_000_000})
"""A frame body of a million empty arrays (1 MB): each is one byte, and a list in Python."""
NESTED = msgpack.packb({"a": [[[]] * 1000] * 1000})
"""A million empty arrays again, but no array longer than 1000: within any length limit."""


def _peak_allocation(decode: Callable[[], object]) -> int:
    """Bytes allocated at the peak while ``decode()`` runs (it must raise E2EProtoError)."""
    tracemalloc.start()
    try:
        with pytest.raises(E2EProtoError):
            decode()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("body", [WIDE, NESTED], ids=["wide", "nested"])
def test_a_frame_of_a_million_empty_arrays_is_refused_cheaply(body: bytes) -> None:
    assert len(body) <= MAX_FRAME_SIZE
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(body)) + body)
    assert _peak_allocation(decoder.next_frame) < 4 * 1024 * 1024  # it used to take ~60 MiB


GROUP_STATE_OF_ARRAYS = msgpack.packb([[[]] * 280] * 280)
"""78,400 empty arrays within a group state's 80 KiB (about 5 MiB unpacked without limits)."""
assert len(GROUP_STATE_OF_ARRAYS) <= MAX_GROUP_STATE_SIZE


def _signed_list_body(body: bytes) -> tuple[Ed25519PublicKey, bytes, bytes]:
    aik = IdentityKeyPair.generate()
    return aik.public_key, body, aik.sign(DEVICE_LIST_PREFIX + body)


@pytest.mark.parametrize("decode", [
    lambda: Envelope.decode(NESTED[3:]),
    lambda: Envelope.decode(b"\x99\x01\xa7message" + NESTED[3:]),
    lambda: decode_header(NESTED[3:]),
    lambda: Payload.decode(pad(NESTED)),
    lambda: SignedDeviceList.verify(*_signed_list_body(NESTED[3:])),
    lambda: decode_group_message(NESTED[3:]),
    lambda: decode_delivery(NESTED[3:]),
    lambda: decode_delivery(b"\x98\x01\xa5group" + NESTED[3:]),
    lambda: decode_group_header(NESTED[3:]),
    lambda: GroupUpdate.decode(GROUP_STATE_OF_ARRAYS, bytes(64), routing=True),
], ids=["envelope", "envelope-field", "ratchet-header", "payload", "device-list",
        "group-message", "delivery", "group-envelope-field", "sender-key-header",
        "group-state"])
def test_every_decoder_of_network_bytes_refuses_nested_arrays_cheaply(
        decode: Callable[[], object]) -> None:
    assert _peak_allocation(decode) < 4 * 1024 * 1024


LIMITS = UnpackLimits(max_str_len=5, max_bin_len=6, max_array_len=7, max_map_len=3,
                      max_containers=4)


@pytest.mark.parametrize(("fits", "too_much"), [
    ("x" * 5, "x" * 6), (b"x" * 6, b"x" * 7), ([0] * 7, [0] * 8),
    ({"a": 0, "b": 0, "c": 0}, {"a": 0, "b": 0, "c": 0, "d": 0}),
    ([[], [], []], [[], [], [], []]), ([[[[]]]], [[[[[]]]]]),
    ({"a": [{}], "b": []}, [{}, {}, [[]]]),
], ids=["str", "bin", "array", "map", "containers", "depth", "maps-count"])
def test_unpack_limits_are_exact(fits: object, too_much: object) -> None:
    assert LIMITS.unpack(msgpack.packb(fits)) == fits
    with pytest.raises(ValueError):
        LIMITS.unpack(msgpack.packb(too_much))


def test_no_extension_types() -> None:
    for limits in (FRAME_LIMITS, ENVELOPE_LIMITS, api.REQUEST_LIMITS, social_api.request_limits()):
        with pytest.raises(ValueError):
            limits.unpack(msgpack.packb({"a": msgpack.ExtType(1, b"x")}))


def _largest_link_request() -> dict[str, Any]:
    return {"id": 2**64 - 1, "type": "link_request", "account": "a" * 64,
            "lookup": bytes(api.LOOKUP_SIZE), "tag": bytes(32),
            "name": "\U0001f600" * api.MAX_DEVICE_NAME_LENGTH, "identity_key": bytes(32),
            "link_signature": bytes(64), "signed_prekey": [2**32 - 1, bytes(32), bytes(64)],
            "one_time_prekeys": [[2**32 - 1 - i, bytes(32)]
                                 for i in range(api.MAX_ONE_TIME_PREKEYS_PER_REQUEST)]}


def test_the_largest_requests_fit_the_servers_limits() -> None:
    link = _largest_link_request()
    assert api.REQUEST_LIMITS.unpack(msgpack.packb(link)) == link
    ack = {"id": 1, "type": "ack", "seqs": [2**63 - 1] * api.MAX_ACK_SEQS}
    assert api.REQUEST_LIMITS.unpack(msgpack.packb(ack)) == ack
    send = {"id": 1, "type": "send", "to": "a" * 64,
            "envelopes": [bytes(api.MAX_ENVELOPE_SIZE)] * api.MAX_SEND_ENVELOPES}
    body = encode_frame(send)[4:]  # a send of nine of the largest envelopes fits a frame
    assert api.REQUEST_LIMITS.unpack(body) == send
    publish = {"id": 1, "type": "publish_prekeys", "identity_key": bytes(32),
               "signed_prekey": [1, bytes(32), bytes(64)], "one_time_prekeys": [
                   [i, bytes(32)] for i in range(social_api.MAX_ONE_TIME_PREKEYS_PER_REQUEST)]}
    assert social_api.request_limits().unpack(msgpack.packb(publish)) == publish
    text = {"id": 1, "type": "send", "conversation": "a" * 64,
            "text": "\U0001f600" * (social_api.MAX_TEXT_BYTES // 4)}
    assert social_api.request_limits().unpack(msgpack.packb(text)) == text
    members = {"id": 1, "type": "group_create", "name": "g", "members": [
        f"member{i}" for i in range(social_api.MAX_GROUP_MEMBERS + 1)]}  # group_too_large
    assert social_api.request_limits().unpack(msgpack.packb(members)) == members



def _fits_a_frame(request: dict[str, Any], limits: UnpackLimits) -> None:
    """``request`` encodes within one frame and unpacks within ``limits`` unchanged."""
    body = encode_frame(request)[4:]
    assert limits.unpack(body) == request


def test_the_largest_group_and_blob_requests_fit_the_relays_limits() -> None:
    blobs = [bytes(32)] * MAX_BLOBS_PER_MESSAGE
    # send with 16 blob ids still fits nine of the largest envelopes in a frame
    _fits_a_frame({"id": 2**64 - 1, "type": "send", "to": "a" * 64, "blobs": blobs,
                   "envelopes": [bytes(api.MAX_ENVELOPE_SIZE)] * api.MAX_SEND_ENVELOPES},
                  api.REQUEST_LIMITS)
    # upload_chunk with a whole chunk: a 1 MiB frame, after authentication
    chunk = {"id": 2**64 - 1, "type": "upload_chunk", "blob_id": bytes(32),
             "offset": 2**63 - 1, "data": bytes(BLOB_CHUNK_SIZE)}
    assert BLOB_CHUNK_SIZE < len(encode_frame(chunk)) - 4 <= MAX_FRAME_SIZE
    _fits_a_frame(chunk, api.REQUEST_LIMITS)
    # group_deliver for a group of 1024 members: (1024 + 1) * 5 envelopes
    _fits_a_frame({"id": 1, "type": "group_deliver", "group_id": bytes(16),
                   "envelopes": [bytes(100)] * api.MAX_GROUP_DELIVER_ENVELOPES},
                  api.REQUEST_LIMITS)
    too_many = {"id": 1, "type": "group_deliver", "group_id": bytes(16),
                "envelopes": [b""] * (api.REQUEST_LIMITS.max_array_len + 1)}
    with pytest.raises(ValueError):
        api.REQUEST_LIMITS.unpack(msgpack.packb(too_many))
    # group_send of a message that fills the frame, announcing 16 blobs
    group_send = {"id": 2**64 - 1, "type": "group_send", "group_id": bytes(16),
                  "version": 2**63 - 1, "devices_digest": bytes(32), "blobs": blobs,
                  "message": bytes(MAX_FRAME_SIZE - 1024)}
    _fits_a_frame(group_send, api.REQUEST_LIMITS)
    # group_put of the longest routing statement: 1024 members of 64 characters, all admins
    names = [f"{i:04d}".ljust(64, "x") for i in range(MAX_GROUP_MEMBERS)]
    state = GroupState(bytes(16), 2**63 - 1, None, tuple(names), tuple(names))
    routing = GroupUpdate.sign(state, Address("a" * 64, MAX_DEVICE_ID),
                               IdentityKeyPair.generate(), routing=True)
    assert GroupUpdate.decode(routing.body, routing.signature, routing=True).state == state
    _fits_a_frame({"id": 1, "type": "group_put", "routing": routing.body,
                   "signature": routing.signature}, api.REQUEST_LIMITS)


def test_the_largest_social_media_requests_fit_the_social_limits() -> None:
    limits = social_api.request_limits()
    media = {"blob_id": bytes(32), "key": bytes(32), "header": bytes(24), "size": 2**40,
             "mime": "application/" + "x" * 243, "name": "\U0001f600" * 255,
             "caption": "\U0001f600" * 4096, "sha256": bytes(32)}
    _fits_a_frame({"id": 1, "type": "send", "conversation": "a" * 64,
                   "text": "\U0001f600" * (social_api.MAX_TEXT_BYTES // 4), "media": media,
                   "blobs": [bytes(32)] * MAX_BLOBS_PER_MESSAGE, "client_id": bytes(16)},
                  limits)
    _fits_a_frame({"id": 2**64 - 1, "type": "upload_chunk", "blob_id": bytes(32),
                   "offset": 2**63 - 1, "data": bytes(BLOB_CHUNK_SIZE)}, limits)
    _fits_a_frame({"id": 1, "type": "group_rename", "conversation": "a" * 64,
                   "name": "b" * 64}, limits)


def test_the_largest_responses_fit_the_frame_limits() -> None:
    reactions = [[f"member{i}", "\U0001f600"] for i in range(social_api.MAX_GROUP_MEMBERS)]
    page = {"id": 1, "ok": True, "more": True, "messages": [
        {"id": i, "conversation": "club", "from": "a" * 64, "device": 0, "ts": 2**62,
         "text": "x", "secret": False, "reactions": reactions, "pinned": False}
        for i in range(social_api.MAX_HISTORY_PAGE)]}
    body = encode_frame(page)[4:]
    assert FRAME_LIMITS.unpack(body) == page
    bundles = {"id": 1, "ok": True, "account": "a" * 64, "bundles": [
        [i, bytes(32), 1, bytes(32), bytes(64), 2, bytes(32)] for i in range(MAX_DEVICES)]}
    assert FRAME_LIMITS.unpack(msgpack.packb(bundles)) == bundles
    # group_send's device_mismatch names every device of 1024 members
    mismatch = {"id": 2**64 - 1, "error": {
        "code": api.DEVICE_MISMATCH, "message": "the member devices changed",
        "devices": [[f"{i:04d}".ljust(64, "x"), list(range(MAX_DEVICES))]
                    for i in range(MAX_GROUP_MEMBERS)]}}
    body = encode_frame(mismatch)[4:]
    assert FRAME_LIMITS.unpack(body) == mismatch
    download = {"id": 2**64 - 1, "ok": True, "data": bytes(BLOB_CHUNK_SIZE), "size": 2**63 - 1}
    assert FRAME_LIMITS.unpack(encode_frame(download)[4:]) == download
    devices = {"id": 1, "ok": True, "account": "a" * 64, "account_key": bytes(32),
               "device_list": bytes(500), "device_list_signature": bytes(64),
               "link_signatures": [[i, bytes(64)] for i in range(1, MAX_DEVICES)],
               "device_info": [[i, "\U0001f600" * 64, 1.5, None] for i in range(MAX_DEVICES)]}
    assert FRAME_LIMITS.unpack(msgpack.packb(devices)) == devices
    media = {"blob_id": bytes(32), "key": bytes(32), "header": bytes(24), "size": 1,
             "mime": "a/b", "name": "n", "caption": "c", "sha256": bytes(32)}
    reactions = [[f"member{i}", "\U0001f600"] for i in range(social_api.MAX_GROUP_MEMBERS)]
    page = {"id": 1, "ok": True, "more": True, "messages": [
        {"id": i, "conversation": "club", "from": "a" * 64, "device": 0, "ts": 2**62,
         "text": "x", "secret": False, "reactions": reactions, "pinned": False,
         "media": media} for i in range(social_api.MAX_HISTORY_PAGE)]}
    assert FRAME_LIMITS.unpack(encode_frame(page)[4:]) == page


def test_group_messages_and_deliveries_round_trip_within_their_limits() -> None:
    key = OwnSenderKey.create(bytes(16))
    message = key.encrypt(bytes(MAX_FRAME_SIZE - 200))  # about the largest in one frame
    data = encode_group_message(message)
    assert decode_group_message(data) == message
    delivery = GroupEnvelope(Address("a" * 64, MAX_DEVICE_ID), message)
    assert decode_delivery(delivery.encode()) == delivery
    with pytest.raises(MalformedError):  # nesting, which a group message never has
        decode_group_message(msgpack.packb([1, [bytes(29)], bytes(24), bytes(16), bytes(64)]))


def test_deep_nesting_is_bounded_by_the_container_count() -> None:
    depth = api.REQUEST_LIMITS.max_containers - 1  # the frame's map is one container
    request = b"\x82\xa4type\xa3ack\xa4seqs" + nested_arrays(depth)
    assert array_depth(decode_frame_body(request, api.REQUEST_LIMITS)["seqs"]) == depth
    deeper = b"\x82\xa4type\xa3ack\xa4seqs" + nested_arrays(depth + 1)
    with pytest.raises(MalformedError, match="arrays and maps"):
        decode_frame_body(deeper, api.REQUEST_LIMITS)

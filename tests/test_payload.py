"""Tests of e2e_proto.payload: padding and the msgpack payload map (DESIGN §5)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_proto.errors import LocalProtocolError, MalformedError
from e2e_proto.payload import KNOWN_KINDS, MAX_KIND_LENGTH, Payload, pad, unpad

BLOCK = 64
ID = bytes(range(16))

# -- strategies -------------------------------------------------------------------------------

msgpack_ints = st.integers(-(2**63), 2**64 - 1)
leaves = (st.none() | st.booleans() | msgpack_ints | st.floats(allow_nan=False)
          | st.text(max_size=30) | st.binary(max_size=30))
values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
field_names = st.text(max_size=12).filter(lambda name: name not in {"id", "ts", "kind"})
payload_fields = st.dictionaries(field_names, values, max_size=5)
kinds = st.sampled_from(sorted(KNOWN_KINDS)) | st.text(min_size=1, max_size=MAX_KIND_LENGTH)
payloads = st.builds(
    Payload,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**63 - 1),
    kinds,
    payload_fields,
)


def padded_body(body: Any) -> bytes:
    """Pack ``body`` with msgpack and pad it, bypassing Payload's own checks."""
    return pad(msgpack.packb(body))


# -- padding ----------------------------------------------------------------------------------


def check_padding(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % BLOCK == 0, len(data)
    assert len(data) < len(padded) <= len(data) + BLOCK, len(data)
    assert padded[:len(data)] == data
    assert padded[len(data)] == 0x80
    assert padded[len(data) + 1:] == bytes(len(padded) - len(data) - 1)
    assert unpad(padded) == data


def test_pad_unpad_every_length_up_to_300() -> None:
    for length in range(301):
        check_padding(bytes([0xA5]) * length)
        check_padding(bytes(length))  # data made of zeros: padding must not eat it
        check_padding(b"\x80" * length)  # data made of the marker byte


def test_padded_sizes_at_block_boundaries() -> None:
    assert len(pad(b"")) == 64
    assert len(pad(bytes(62))) == 64
    assert len(pad(bytes(63))) == 64
    assert len(pad(bytes(64))) == 128
    assert len(pad(bytes(127))) == 128
    assert len(pad(bytes(128))) == 192


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1000))
def test_pad_unpad_round_trip(data: bytes) -> None:
    check_padding(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.binary(min_size=64 * n, max_size=64 * n)))
def test_unpad_accepts_only_canonical_padding(data: bytes) -> None:
    # Whatever unpad accepts, pad reproduces byte for byte: the padding is unambiguous.
    try:
        stripped = unpad(data)
    except MalformedError:
        return
    assert pad(stripped) == data


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(bytes(64), id="no-0x80-all-zero"),
    pytest.param(b"abc" + bytes(61), id="no-0x80"),
    pytest.param(b"\x01" * 64, id="no-0x80-no-zeros"),
    pytest.param(b"abc\x80" + bytes(59), id="wrong-length-63"),
    pytest.param(b"abc\x80" + bytes(61), id="wrong-length-65"),
    pytest.param(pad(b"abc")[:-1], id="wrong-length-truncated"),
    pytest.param(pad(b"abc") + b"\x00", id="wrong-length-extended"),
    pytest.param(b"abc\x80" + bytes(124), id="padding-longer-than-a-block"),
    pytest.param(b"\x80" + bytes(127), id="padding-only-two-blocks"),
    pytest.param(b"abc\x80\x01" + bytes(59), id="non-zero-after-0x80"),
    pytest.param(b"abc\x80" + bytes(59) + b"\x01", id="non-zero-last-byte"),
])
def test_unpad_rejects_bad_padding(data: bytes) -> None:
    with pytest.raises(MalformedError):
        unpad(data)


def test_unpad_two_markers_keeps_the_first_as_data() -> None:
    # b"abc\x80" + padding: the last 0x80 is the marker, the earlier one is data.
    assert unpad(b"abc\x80\x80" + bytes(59)) == b"abc\x80"


# -- payload round trips ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_payload_round_trip(payload: Payload) -> None:
    encoded = payload.encode()
    assert len(encoded) % BLOCK == 0
    decoded = Payload.decode(encoded)
    assert decoded == payload
    assert decoded.known == (payload.kind in KNOWN_KINDS)
    assert decoded.encode() == encoded


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=2000), st.integers(0, 2**63 - 1))
def test_text_payload_round_trip(body: str, ts: int) -> None:
    payload = Payload.new("text", ts, body=body)
    decoded = Payload.decode(payload.encode())
    assert decoded.kind == "text" and decoded.known
    assert decoded.fields == {"body": body}
    assert decoded.ts == ts and decoded.id == payload.id and len(decoded.id) == 16


def test_payload_encoding_is_the_padded_map() -> None:
    payload = Payload(ID, 1234, "text", {"body": "hi"})
    body = {"id": ID, "ts": 1234, "kind": "text", "body": "hi"}
    assert payload.encode() == pad(msgpack.packb(body))


def test_payload_new_takes_its_id_from_the_random_source() -> None:
    requested: list[int] = []

    def random(size: int) -> bytes:
        requested.append(size)
        return b"\x07" * size

    payload = Payload.new("receipt", 99, random=random, of=[b"x" * 16])
    assert requested == [16]
    assert payload.id == b"\x07" * 16
    assert payload.fields == {"of": [b"x" * 16]}


def test_payload_lengths_are_hidden_within_a_block() -> None:
    short = Payload(ID, 1, "text", {"body": "a"}).encode()
    longer = Payload(ID, 1, "text", {"body": "a" * 20}).encode()
    assert len(short) == len(longer) == 64


@pytest.mark.parametrize("kind", sorted(KNOWN_KINDS))
def test_known_kinds(kind: str) -> None:
    assert Payload.decode(Payload(ID, 1, kind).encode()).known


@pytest.mark.parametrize("kind", ["poll", "TEXT", "text ", "x" * MAX_KIND_LENGTH, "é"])
def test_unknown_kind_is_kept_with_its_fields(kind: str) -> None:
    fields = {"question": "lunch?", "options": ["a", "b"], "blob": b"\x00\x01", "n": 3}
    data = padded_body({"id": ID, "ts": 5, "kind": kind, **fields})
    payload = Payload.decode(data)
    assert payload.known is False
    assert payload.kind == kind
    assert payload.fields == fields
    assert payload.id == ID and payload.ts == 5
    assert Payload.decode(payload.encode()) == payload


# -- invalid payloads -------------------------------------------------------------------------


GOOD = {"id": ID, "ts": 1, "kind": "text", "body": "hi"}


@pytest.mark.parametrize("data", [
    pytest.param(padded_body([ID, 1, "text"]), id="array"),
    pytest.param(padded_body(7), id="int"),
    pytest.param(padded_body("text"), id="str"),
    pytest.param(padded_body(None), id="nil"),
    pytest.param(padded_body(ID), id="bin"),
    pytest.param(pad(b"\xc1"), id="not-msgpack"),
    pytest.param(pad(b""), id="empty-body"),
    pytest.param(pad(msgpack.packb(GOOD) + b"\x00"), id="trailing-bytes"),
    pytest.param(pad(msgpack.packb(GOOD)[:-2]), id="truncated"),
    pytest.param(padded_body({k: v for k, v in GOOD.items() if k != "id"}), id="missing-id"),
    pytest.param(padded_body({k: v for k, v in GOOD.items() if k != "ts"}), id="missing-ts"),
    pytest.param(padded_body({k: v for k, v in GOOD.items() if k != "kind"}), id="missing-kind"),
    pytest.param(padded_body({**GOOD, "id": ID[:15]}), id="15-byte-id"),
    pytest.param(padded_body({**GOOD, "id": ID + b"\x00"}), id="17-byte-id"),
    pytest.param(padded_body({**GOOD, "id": ID.hex()[:16]}), id="id-as-str"),
    pytest.param(padded_body({**GOOD, "ts": -1}), id="negative-ts"),
    pytest.param(padded_body({**GOOD, "ts": -(2**63)}), id="very-negative-ts"),
    pytest.param(padded_body({**GOOD, "ts": "1"}), id="ts-as-str"),
    pytest.param(padded_body({**GOOD, "ts": 1.0}), id="ts-as-float"),
    pytest.param(padded_body({**GOOD, "ts": True}), id="ts-as-bool"),
    pytest.param(padded_body({**GOOD, "kind": ""}), id="empty-kind"),
    pytest.param(padded_body({**GOOD, "kind": 3}), id="kind-as-int"),
    pytest.param(padded_body({**GOOD, "kind": b"text"}), id="kind-as-bin"),
    pytest.param(padded_body({**GOOD, "kind": "k" * (MAX_KIND_LENGTH + 1)}), id="long-kind"),
    pytest.param(padded_body({**GOOD, 1: "int key"}), id="int-key"),
    pytest.param(padded_body({**GOOD, b"bin": "bin key"}), id="bin-key"),
    pytest.param(msgpack.packb(GOOD), id="not-padded"),
])
def test_invalid_payloads_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        Payload.decode(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_payload_decode_random_bytes(data: bytes) -> None:
    for candidate in (data, pad(data)):
        try:
            payload = Payload.decode(candidate)
        except MalformedError:
            continue
        assert Payload.decode(payload.encode()) == payload


@pytest.mark.parametrize("depth", [10, 1000, 1023, 10_000])
def test_payload_deep_nesting(depth: int) -> None:
    prefix = msgpack.packb({"id": ID, "ts": 1, "kind": "text", "deep": None})[:-1]
    data = pad(prefix + b"\x91" * depth + b"\xc0")  # "deep": [[[...nil...]]]
    try:
        payload = Payload.decode(data)
    except MalformedError:
        return
    value, levels = payload.fields["deep"], 0
    while isinstance(value, list):
        value, levels = value[0], levels + 1
    assert value is None and levels == depth


# -- local misuse -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["id", "ts", "kind"])
def test_reserved_field_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        Payload(ID, 1, "text", {"body": "hi", name: "x"})


def test_reserved_field_name_is_refused_by_new() -> None:
    with pytest.raises(LocalProtocolError):
        Payload.new("text", 1, body="hi", id=ID)


def test_decoded_fields_never_hold_reserved_names() -> None:
    decoded = Payload.decode(padded_body(GOOD))
    assert decoded.fields == {"body": "hi"}
    assert (decoded.id, decoded.ts, decoded.kind) == (ID, 1, "text")


@pytest.mark.parametrize(("args", "what"), [
    ((ID[:15], 1, "text"), "15-byte id"),
    ((ID + b"\x00", 1, "text"), "17-byte id"),
    ((bytearray(ID), 1, "text"), "bytearray id"),
    ((ID, -1, "text"), "negative ts"),
    ((ID, True, "text"), "bool ts"),
    ((ID, 1.5, "text"), "float ts"),
    ((ID, 1, ""), "empty kind"),
    ((ID, 1, "k" * (MAX_KIND_LENGTH + 1)), "long kind"),
    ((ID, 1, b"text"), "bytes kind"),
])
def test_constructor_refuses_invalid_fields(args: tuple[Any, ...], what: str) -> None:
    with pytest.raises(LocalProtocolError):
        Payload(*args)


def test_unencodable_field_value_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Payload(ID, 1, "text", {"body": object()}).encode()


@pytest.mark.parametrize(
    ("ts", "fields"), [(2**64, {}), (2**63, {}), (1, {"n": 2**64}), (1, {"n": -(2**63) - 1})],
    ids=["ts", "ts-beyond-sqlite", "field-too-big", "field-too-small"])
def test_out_of_range_int_is_a_local_error(ts: int, fields: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        Payload(ID, ts, "text", fields).encode()


@pytest.mark.parametrize("name", [1, b"bin"], ids=["int", "bytes"])
def test_non_str_field_name_is_a_local_error(name: Any) -> None:
    with pytest.raises(LocalProtocolError):
        Payload(ID, 1, "text", {name: "x"}).encode()


def test_peer_payload_with_huge_ts_is_malformed() -> None:
    """A ts no store can keep (>= 2**63) is the peer's error, not a crash in the receiver."""
    body = {"id": ID, "ts": 2**63, "kind": "text", "text": "x"}
    with pytest.raises(MalformedError):
        Payload.decode(pad(msgpack.packb(body)))

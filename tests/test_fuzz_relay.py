"""Fuzz the relay's frame handling and every request handler with hypothesis.

For each example a fresh relay (SQLite in a temporary folder, with a second account "other" and
a group of both) serves a connection over an in-memory stream: the connection registers (or
not), then sends random, mutated or truncated frames, and well-formed requests of every route
(typical values per field, so that they reach deep into the handlers). Every answer must be a
well-formed frame with ``ok`` or a known error code, and a second connection must still be served
afterwards. ``E2E_FUZZ_EXAMPLES`` sets the number of examples (``make fuzz`` runs many more than
CI).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from e2e_proto import call_api
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.blob_api import MIN_BLOB_SIZE
from e2e_proto.constants import NONCE_SIZE, TAG_SIZE
from e2e_proto.devices import DeviceList
from e2e_proto.groups import GroupState, member_devices_digest
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.ratchet import RatchetMessage, encode_header
from e2e_proto.sender_keys import OwnSenderKey
from e2e_proto.wire import Envelope, FrameDecoder, encode_frame, encode_group_message
from server.calls.registry import SfuGrant
from server.relay.config import RelayConfig
from server.relay.routes import AUTHENTICATED_ROUTES, PUBLIC_ROUTES
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from server.relay.store import GroupRoute
from tests.fuzz_support import (
    EXAMPLES,
    error_codes,
    error_log,
    nested,
    read_all,
    request_dicts,
    threads_inline,
)

ERROR_CODES = error_codes(api)
# From the relay's own route tables, so that a request or field added later is fuzzed too.
ROUTES = {**PUBLIC_ROUTES, **AUTHENTICATED_ROUTES}
REQUEST_TYPES = sorted(ROUTES)  # type: ignore[type-var]
FIELDS = sorted({field for route in ROUTES.values() for field in route.fields})

scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
           | st.text(max_size=20) | st.binary(max_size=80) | st.sampled_from(["fuzz", "alice"]))
values = nested(scalars)
requests = request_dicts(REQUEST_TYPES, FIELDS, values)

FUZZ, OTHER = Address("fuzz", 0), Address("other", 0)
GROUP = GroupRoute(b"\x07" * 16, 1, (FUZZ.account, OTHER.account), (FUZZ.account,), b"", b"")
"""The group every example's relay holds: the registering account and "other"."""
_GROUP_MESSAGE = encode_group_message(OwnSenderKey(GROUP.group_id, 1, bytes(32), bytes(32))
                                      .encrypt(b"x" * 16, bytes))


def _envelope(sender: Address, recipient: Address) -> bytes:
    return Envelope(sender, recipient, RatchetMessage(encode_header(bytes(32), 0, 0),
                                                      bytes(NONCE_SIZE), bytes(TAG_SIZE))).encode()


accounts = st.sampled_from(["fuzz", "other", "nobody", "", "a" * 65]) | st.text(max_size=8)
ints = st.integers(-1, 3) | st.sampled_from([2**32 - 1, 2**32, 2**63 - 1, 2**63])
EMPTY_BLOB = bytes(MIN_BLOB_SIZE)
"""A blob an example can upload whole (one chunk) and then announce."""
EMPTY_BLOB_ID = hashlib.sha256(EMPTY_BLOB).digest()
GROUP_DIGEST = member_devices_digest({"fuzz": [0], "other": [0]})
_known_blobs = st.sampled_from([EMPTY_BLOB_ID, bytes(32)])
blob_ids = st.one_of(_known_blobs, _known_blobs, st.binary(min_size=31, max_size=33))
_typical: dict[str, st.SearchStrategy[Any]] = {
    "account": accounts, "to": accounts, "name": st.text(max_size=70),
    "account_key": st.binary(min_size=31, max_size=33),
    "identity_key": st.binary(min_size=31, max_size=33),
    "signature": st.binary(min_size=63, max_size=65),
    "link_signature": st.binary(min_size=63, max_size=65),
    "device_list_signature": st.binary(min_size=63, max_size=65),
    "device_list": st.binary(max_size=80), "device_id": ints,
    "device_ids": st.lists(ints, max_size=6), "seqs": st.lists(ints, max_size=6),
    "lookup": st.binary(min_size=15, max_size=17), "tag": st.binary(min_size=31, max_size=33),
    "link": st.none() | st.binary(min_size=15, max_size=17),
    "signed_prekey": st.none() | st.lists(ints | st.binary(max_size=65), max_size=3),
    "one_time_prekeys": st.lists(st.lists(ints | st.binary(max_size=33), max_size=2),
                                 max_size=3),
    "envelopes": st.lists(st.sampled_from([
        _envelope(FUZZ, OTHER), _envelope(FUZZ, Address("other", 1)), _envelope(OTHER, FUZZ),
        _envelope(FUZZ, FUZZ)]) | st.binary(max_size=40), max_size=4),
    "blobs": st.none() | st.just([]) | st.lists(blob_ids, max_size=3),
    "group_id": st.just(GROUP.group_id) | st.binary(min_size=15, max_size=17),
    "version": st.just(GROUP.version) | ints,
    "devices_digest": st.sampled_from([GROUP_DIGEST, bytes(32)]) | st.binary(max_size=33),
    "message": st.just(_GROUP_MESSAGE) | st.binary(max_size=80),
    "routing": st.just(GroupState(GROUP.group_id, 2, None, GROUP.members, GROUP.admins)
                       .body(FUZZ)) | st.binary(max_size=80),
    "blob_id": blob_ids,
    "size": st.just(len(EMPTY_BLOB)) | st.integers(-1, 40) | st.sampled_from([2**40, 2**63]),
    "offset": st.just(0) | st.integers(-1, 40) | st.sampled_from([2**63 - 1, 2**63]),
    "data": st.just(EMPTY_BLOB) | st.binary(max_size=40),
    "length": st.integers(-1, 40) | st.just(2**20),
    "call_id": st.binary(min_size=15, max_size=17),
    "enabled": st.booleans(), "client_id": st.binary(min_size=15, max_size=17),
    "statement": st.binary(max_size=120),
    "private_signature": st.binary(min_size=63, max_size=65),
    "social_signature": st.binary(min_size=63, max_size=65),
    "profile": st.none() | st.dictionaries(st.sampled_from(["name", "about", "version"]),
                                           st.text(max_size=10) | ints, max_size=3),
    "statuses": st.lists(st.dictionaries(st.sampled_from(["text", "posted", "expires"]),
                                         st.text(max_size=10) | ints, max_size=3), max_size=3),
    "revocation": st.binary(max_size=120), "limit": st.integers(-1, 101),
}
"""A typical value for every field a route reads: a route or field added later must add one."""
assert set(_typical) == set(FIELDS)
field_values = {field: st.one_of(typical, typical, typical, typical, values)  # mostly typical
                for field, typical in _typical.items()}
shaped = st.sampled_from(REQUEST_TYPES).flatmap(lambda kind: st.fixed_dictionaries(
    {"type": st.just(kind), "id": st.integers(0, 2**31),
     **{field: field_values[field] for field in ROUTES[kind].fields}}))
"""Well-formed requests of every route, each with the fields its route reads."""
raw_frames = st.one_of(
    requests.map(encode_frame),
    shaped.map(encode_frame), shaped.map(encode_frame), shaped.map(encode_frame),
    st.binary(max_size=64).map(lambda body: len(body).to_bytes(4, "big") + body),
    st.binary(max_size=64),
    requests.map(encode_frame).map(lambda data: data[: max(1, len(data) // 2)]),
)


def _register_frame(nonce: bytes) -> dict[str, Any]:
    aik, dik = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    signed = DeviceList("fuzz", 1, ((0, dik.public_key),)).sign(aik)
    return {"id": 1, "type": "register", "account": "fuzz", "account_key": aik.public_key.raw,
            "device_list": signed.body, "device_list_signature": signed.signature,
            "signature": dik.sign(api.auth_message(nonce, "fuzz", 0))}


async def _scenario(folder: Path, register: bool, inputs: list[bytes]) -> None:
    store = SqliteRelayStore(folder / "relay.db")
    await store.create_account(OTHER.account, bytes(32), 1, b"list", bytes(64), {0: bytes(32)},
                               0.0)
    await store.put_group(GROUP, FUZZ.account, 1)
    relay = Relay(store, RelayConfig(auth_timeout=5, frame_timeout=5),
                  sfu=SfuGrant("127.0.0.1", 9, bytes(32)))
    with contextlib.closing(store), error_log("e2e.relay") as errors:
        async with trio.open_nursery() as nursery:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(relay.handle_stream, server, "fuzz")
            decoder = FrameDecoder()
            challenge = (await read_all(client, decoder))[0]
            if register:
                await client.send_all(encode_frame(_register_frame(challenge["nonce"])))
            for data in inputs:
                try:
                    await client.send_all(data)
                except trio.BrokenResourceError:
                    break
            answers = await read_all(client, decoder)
            for frame in answers:
                if "error" in frame:
                    assert frame["error"]["code"] in ERROR_CODES, frame
                else:
                    assert frame.get("ok") is True or frame.get("type") in (
                        "deliver", "queue_empty", "prekeys_low", "link_approved",
                        *call_api.PUSHES), frame
            await client.aclose()
            # The relay still serves a well-behaved connection.
            other, other_server = trio.testing.memory_stream_pair()
            nursery.start_soon(relay.handle_stream, other_server, "next")
            fresh = FrameDecoder()
            assert (await read_all(other, fresh))[0]["type"] == "challenge"
            await other.send_all(encode_frame({"id": 9, "type": "ping"}))
            assert (await read_all(other, fresh)) == [{"id": 9, "ok": True}]
            nursery.cancel_scope.cancel()
        errors.assert_none()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(register=st.booleans(), inputs=st.lists(raw_frames, min_size=1, max_size=6))
@example(register=True, inputs=[encode_frame({"id": 5, "type": "ack", "seqs": [2**63]})])
@example(register=True, inputs=[encode_frame(
    {"id": 6, "type": "fetch_bundles", "account": "fuzz", "device_ids": [[1]]})])
@example(register=True, inputs=[encode_frame(
    {"id": 7, "type": "fetch_bundles", "account": "fuzz", "device_ids": [0] * 50})])
@example(register=False, inputs=[encode_frame(
    {"id": 8, "type": "get_devices", "account": "fuzz", "device_ids": [2**64 - 1]})])
@example(register=True, inputs=[encode_frame(frame) for frame in (  # a file to the group
    {"id": 10, "type": "upload_begin", "blob_id": EMPTY_BLOB_ID, "size": len(EMPTY_BLOB)},
    {"id": 11, "type": "upload_chunk", "blob_id": EMPTY_BLOB_ID, "offset": 0,
     "data": EMPTY_BLOB},
    {"id": 12, "type": "upload_finish", "blob_id": EMPTY_BLOB_ID},
    {"id": 13, "type": "group_send", "group_id": GROUP.group_id, "version": GROUP.version,
     "devices_digest": GROUP_DIGEST, "message": _GROUP_MESSAGE, "blobs": [EMPTY_BLOB_ID]},
    {"id": 14, "type": "group_deliver", "group_id": GROUP.group_id,
     "envelopes": [_envelope(FUZZ, OTHER)]})])
def test_relay_survives_any_frames(register: bool, inputs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder, threads_inline():  # blob file I/O
        trio.run(_scenario, Path(folder), register, inputs,
                 clock=trio.testing.MockClock(autojump_threshold=0))

"""Fuzz the social server's frame handling and every request handler with hypothesis.

Modelled on ``tests/test_fuzz_relay.py``. For each example a fresh social server (SQLite in a
temporary folder, Argon2id at the MIN limits) serves a connection over an in-memory stream. The
connection stays logged out, registers, or logs in to an account registered on another
connection; then it sends random, mutated or truncated frames: request types from the server's
handler tables, fields with random values (huge ints, NUL and FTS5 operators in text, nesting,
the ids of real messages and names of real accounts and groups). Every answer must be ``ok`` or
an error with a code from :mod:`e2e_proto.social_api`, the server must log no ERROR record, and
a second connection must still be served. ``E2E_FUZZ_EXAMPLES`` sets the number of examples
(``make fuzz`` runs many more than CI).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import nacl.pwhash
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from e2e_proto import call_api
from e2e_proto import social_api as api
from e2e_proto.wire import FrameDecoder, encode_frame
from server.calls.registry import SfuGrant
from server.social.routes import AUTHENTICATED_ROUTES, PUBLIC_ROUTES
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore
from shared.tokens import token_hash
from tests.fuzz_support import (
    EXAMPLES,
    error_codes,
    error_log,
    nested,
    read_all,
    request_dicts,
    threads_inline,
)
from tests.social_harness import FAST, PASSWORD

ERROR_CODES = error_codes(api)
REQUEST_TYPES = sorted({*PUBLIC_ROUTES, *AUTHENTICATED_ROUTES})  # type: ignore[type-var]
FIELDS = sorted({field for table in (PUBLIC_ROUTES, AUTHENTICATED_ROUTES)
                 for route in table.values() for field in route.fields})
PUSHES = ("event", "queue_empty", *call_api.PUSHES)

KNOWN_TOKEN = bytes(range(32))
"""The token of a device of ``other``, seeded in every store: ``auth`` with it succeeds."""
EXPIRED_TOKEN = bytes(range(1, 33))
"""The token of a device of ``other`` that expired long ago."""

names = st.sampled_from(["fuzz", "other", "club", "nobody", "Fuzz", "", "a" * 65, "../x"])
texts = st.text(max_size=20) | st.sampled_from(
    ["hello", "NEAR(hello world)", "hello OR world", "hel*", "^hello", "text:hello", '"',
     '"hello', "a\x00b", "\x00", "AND", "NOT hello", "(", "{text}: x", "-hello", "☃" * 10,
     " ", "\t\n"])
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.integers(0, 6)
           | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -1, 2**32, 2**31]) | st.floats()
           | texts | names | st.binary(max_size=80)
           | st.sampled_from([KNOWN_TOKEN, EXPIRED_TOKEN, bytes(32), "👍", "❤️", "👍👍"]))
values = nested(scalars)
requests = request_dicts(REQUEST_TYPES, FIELDS, values)
SHAPES: dict[str, list[str]] = {
    "register": ["account", "password"], "login": ["account", "password"], "auth": ["token"],
    "ping": [], "conversation": ["conversation"], "send": ["conversation", "text"],
    "react": ["message", "emoji"], "unreact": ["message"], "pin": ["message"],
    "unpin": ["message"], "pins": ["conversation"], "history": ["conversation", "before", "limit"],
    "search": ["text", "limit"], "group_create": ["name", "members"],
    "group_add": ["conversation", "members"], "secret": ["conversation"],
    "group_remove": ["conversation", "member"], "group_leave": ["conversation"],
    "group_rename": ["conversation", "name"],
    "publish_prekeys": ["identity_key", "signed_prekey", "one_time_prekeys"],
    "get_devices": ["account"], "fetch_bundles": ["account", "device_ids"], "ack": ["seq"],
    "logout": [], "devices": [], "revoke_device": ["device_id"],
    "upload_begin": ["blob_id", "size"], "upload_chunk": ["blob_id", "offset", "data"],
    "upload_finish": ["blob_id"], "download": ["blob_id", "offset", "length"],
    "call_start": ["conversation"], "call_join": ["call_id"], "call_leave": ["call_id"],
    "call_end": ["call_id"], "call_list": [], "call_signal": ["call_id", "envelopes"],
    "profile_set": ["name", "about", "avatar"], "profile_get": ["account"],
    "status_post": ["text"], "status_list": [],
    "cross_publish": ["identity_key", "device_list", "device_list_signature",
                      "link_signatures"],
    "cross_join": ["identity_key", "signature"], "cross_get": [], "cross_set": ["enabled"],
    "cross_devices": ["account"], "cross_bundles": ["account", "device_ids"],
    "cross_send": ["to", "envelopes", "client_id"], "linked": [],
}
"""The fields each request type reads, so that well-formed requests reach deep into handlers."""
assert set(SHAPES) == set(REQUEST_TYPES)
ids = st.integers(1, 6) | st.sampled_from([0, 2**63 - 1, 2**63])
_typical: dict[str, st.SearchStrategy[Any]] = {
    "account": names, "conversation": names, "name": names, "member": names,
    "members": st.lists(names, max_size=4),
    "password": st.sampled_from([PASSWORD, "wrong password", "short"]) | texts,
    "token": st.sampled_from([KNOWN_TOKEN, EXPIRED_TOKEN, bytes(32)]) | st.binary(max_size=40),
    "text": texts, "message": ids, "before": ids, "seq": ids, "limit": st.integers(-1, 101),
    "emoji": st.sampled_from(["👍", "❤️", "👍👍", "👨‍👩‍👧‍👦", "a", ""]),
    "identity_key": st.binary(min_size=31, max_size=33), "device_ids": st.lists(ids, max_size=3),
    "device_id": ids,
    "signed_prekey": st.none() | st.lists(st.integers(0, 3) | st.binary(max_size=64), max_size=3),
    "one_time_prekeys": st.lists(st.lists(st.integers(0, 3) | st.binary(max_size=33),
                                          max_size=2), max_size=3),
    "blob_id": st.sampled_from([bytes(32), b"\x01" * 32]) | st.binary(min_size=31, max_size=33),
    "size": st.integers(-1, 40) | st.sampled_from([2**40, 104_884_801]),
    "offset": st.integers(-1, 40) | st.sampled_from([2**63 - 1, 2**63]),
    "data": st.binary(max_size=40), "length": st.integers(-1, 40) | st.just(2**20),
    "call_id": st.binary(min_size=15, max_size=17),
    "envelopes": st.lists(st.binary(max_size=120), max_size=3),
    "about": texts, "avatar": st.none() | values,
    "device_list": st.binary(max_size=80), "device_list_signature": st.binary(max_size=65),
    "link_signatures": st.lists(st.lists(ids | st.binary(max_size=65), max_size=2), max_size=3),
    "signature": st.binary(min_size=63, max_size=65), "enabled": st.booleans(),
    "to": st.sampled_from(["other@private", "fuzz@private", "other@social", "other"]),
    "client_id": st.binary(min_size=15, max_size=17),
}
field_values = {field: st.one_of(typical, typical, typical, values)  # mostly the right type
                for field, typical in _typical.items()}
shaped = st.sampled_from(sorted(SHAPES)).flatmap(lambda kind: st.fixed_dictionaries(
    {"type": st.just(kind), "id": st.integers(0, 2**31),
     **{field: field_values[field] for field in SHAPES[kind]}}))
raw_frames = st.one_of(
    requests.map(encode_frame),
    shaped.map(encode_frame),
    shaped.map(encode_frame),
    st.binary(max_size=64).map(lambda body: len(body).to_bytes(4, "big") + body),
    st.binary(max_size=64),
    requests.map(encode_frame).map(lambda data: data[: max(1, len(data) // 2)]),
)


def _check_answers(frames: list[dict[str, Any]]) -> None:
    for frame in frames:
        if "error" in frame:
            assert frame["error"]["code"] in ERROR_CODES, frame
        else:
            assert frame.get("ok") is True or frame.get("type") in PUSHES, frame


def _seed(store: SqliteSocialStore) -> None:
    """An account ``other`` with a live and an expired device, a group ``club`` of ``other``,
    and messages 1 and 2 in it (one pinned, one with a reaction)."""
    hashed = nacl.pwhash.argon2id.str(PASSWORD.encode(), opslimit=FAST.password_opslimit,
                                      memlimit=FAST.password_memlimit)
    store.create_account("other", hashed, 0.0)
    store.add_device("other", token_hash(KNOWN_TOKEN), time.time() + 3600, 0.0)
    store.add_device("other", token_hash(EXPIRED_TOKEN), 1.0, 0.0)
    club = store.create_group("club", ["other"], "other", 0, 1)
    assert club.id is not None
    first = store.add_message(club.id, "other", 0, 2, "hello world", [])
    store.add_message(club.id, "other", 0, 3, "NEAR OR *", [])
    message = store.message(first)
    assert message is not None
    store.set_pinned(message, "other", 0, True, 4)
    store.set_reaction(message, "other", 0, "👍", 5)


async def _scenario(folder: Path, mode: str, inputs: list[bytes]) -> None:
    store = SqliteSocialStore(folder / "social.db")
    _seed(store)
    server = SocialServer(store, FAST, sfu=SfuGrant("127.0.0.1", 9, bytes(32)))
    with contextlib.closing(store), error_log("e2e.social") as errors:
        async with trio.open_nursery() as nursery:
            if mode == "login":  # an account made on another connection, then a login here
                first, first_server = trio.testing.memory_stream_pair()
                nursery.start_soon(server.handle_stream, first_server, "first")
                await first.send_all(encode_frame(
                    {"id": 1, "type": "register", "account": "fuzz", "password": PASSWORD}))
                assert (await read_all(first, FrameDecoder()))[0]["ok"] is True
                await first.aclose()
            client, stream = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, stream, "fuzz")
            decoder = FrameDecoder()
            if mode != "none":
                await client.send_all(encode_frame(
                    {"id": 1, "type": mode, "account": "fuzz", "password": PASSWORD}))
                logged_in = await read_all(client, decoder)
                assert logged_in[0]["ok"] is True, logged_in
                _check_answers(logged_in)
            for data in inputs:
                try:
                    await client.send_all(data)
                except trio.BrokenResourceError:
                    break
            _check_answers(await read_all(client, decoder))
            await client.aclose()
            # The server still serves a well-behaved connection.
            other, other_server = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, other_server, "next")
            await other.send_all(encode_frame({"id": 9, "type": "ping"}))
            assert (await read_all(other, FrameDecoder())) == [{"id": 9, "ok": True}]
            nursery.cancel_scope.cancel()
        errors.assert_none()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mode=st.sampled_from(["none", "register", "login"]),
       inputs=st.lists(raw_frames, min_size=1, max_size=6))
@example(mode="register", inputs=[encode_frame(
    {"id": 2, "type": "search", "text": 'NEAR("hello" world) OR ^x* \x00'})])
@example(mode="register", inputs=[encode_frame(
    {"id": 3, "type": "history", "conversation": "club", "before": 2**63})])
@example(mode="none", inputs=[encode_frame({"id": 4, "type": "auth", "token": EXPIRED_TOKEN}),
                              encode_frame({"id": 5, "type": "auth", "token": KNOWN_TOKEN}),
                              encode_frame({"id": 6, "type": "unreact", "message": 1})])
@example(mode="none", inputs=[  # logged in by the frame before a malformed one, in one read
    encode_frame({"id": 7, "type": "auth", "token": KNOWN_TOKEN}) + b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x00"])
def test_social_server_survives_any_frames(mode: str, inputs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder, \
            threads_inline():
        trio.run(_scenario, Path(folder), mode, inputs,
                 clock=trio.testing.MockClock(autojump_threshold=0))

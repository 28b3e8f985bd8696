"""Fuzz the relay's frame handling and every request handler with hypothesis.

For each example a fresh relay (SQLite in a temporary folder) serves a connection over an
in-memory stream: the connection registers (or not), then sends random, mutated or truncated
frames. Every answer must be a well-formed frame with ``ok`` or a known error code, and a second
connection must still be served afterwards. ``E2E_FUZZ_EXAMPLES`` sets the number of examples
(``make fuzz`` runs many more than CI).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from e2e_proto import call_api
from e2e_proto import relay_api as api
from e2e_proto.devices import DeviceList
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.wire import FrameDecoder, encode_frame
from server.calls.registry import SfuGrant
from server.relay.config import RelayConfig
from server.relay.routes import AUTHENTICATED_ROUTES, PUBLIC_ROUTES
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from tests.fuzz_support import (
    EXAMPLES,
    error_codes,
    error_log,
    nested,
    read_all,
    request_dicts,
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
raw_frames = st.one_of(
    requests.map(encode_frame),
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
def test_relay_survives_any_frames(register: bool, inputs: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        trio.run(_scenario, Path(folder), register, inputs,
                 clock=trio.testing.MockClock(autojump_threshold=0))

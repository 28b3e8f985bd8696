"""The relay against hostile and mistaken clients, at the frame level."""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
import pytest
import trio

from client.core.connection import ServerError, open_connection
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.devices import DeviceList
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.wire import Envelope, FrameDecoder, encode_frame
from server.relay.config import RelayConfig
from tests.relay_harness import (
    drain,
    make_client,
    register,
    relay_with_alice_and_bob,
    session_of,
    start_relay,
)


async def _raw_exchange(port: int, data: bytes) -> list[dict]:
    """Send raw bytes after the challenge; return every frame until the relay closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await _raw_exchange_on(stream, FrameDecoder(), data)


async def _raw_exchange_on(stream: trio.SocketStream, decoder: FrameDecoder,
                           data: bytes) -> list[dict]:
    """Send raw bytes on ``stream``; return every frame until the relay closes it."""
    frames: list[dict] = []
    with trio.fail_after(10):
        await stream.send_all(data)
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            decoder.feed(chunk)
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
    await stream.aclose()
    return frames


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("garbage", [
    _frame(b"\xc1"), _frame(msgpack.packb([1, 2])), _frame(msgpack.packb({1: 2})),
    _frame(b"\x91" * 5000), b"\x00\x00\x00\x05\x81",
])
async def test_malformed_frame_gets_error_then_disconnect(nursery, tmp_path: Path, relay_db,
                                                          garbage: bytes) -> None:
    relay = await start_relay(nursery, relay_db)
    if garbage == b"\x00\x00\x00\x05\x81":  # a truncated frame: the client just hangs up
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await stream.send_all(garbage)
        await stream.aclose()
    else:
        frames = await _raw_exchange(relay.port, garbage)
        assert frames[0]["type"] == "challenge"
        assert frames[-1]["error"]["code"] == api.BAD_REQUEST
    await register(make_client(tmp_path / "a", relay.port), "alice")  # still serving


async def test_oversized_frame_refused_before_it_is_read(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db, RelayConfig(max_frame_size=65536))
    frames = await _raw_exchange(relay.port, struct.pack(">I", 10**9))  # no body follows
    assert frames[-1]["error"]["code"] == api.FRAME_TOO_LARGE
    await register(make_client(tmp_path / "a", relay.port), "alice")


@pytest.mark.parametrize("request_fields,code", [
    ({"type": "nonsense"}, api.UNSUPPORTED),
    ({"type": "send", "to": "bob", "envelopes": []}, api.NOT_AUTHENTICATED),
    ({"type": "auth", "account": "Bad Name", "device_id": 0, "signature": b""},
     api.BAD_REQUEST),
    ({"type": "auth", "account": "ghost", "device_id": 0, "signature": bytes(64)},
     api.UNKNOWN_ACCOUNT),
    ({"type": "auth", "account": "alice", "device_id": 0, "signature": bytes(64)},
     api.AUTH_FAILED),
    ({"type": "auth", "account": "alice", "device_id": 3, "signature": bytes(64)},
     api.AUTH_FAILED),
    ({"type": "register", "account": "carol", "account_key": b"x"}, api.BAD_REQUEST),
])
async def test_bad_requests_get_typed_errors(nursery, tmp_path: Path,
                                             relay_db, request_fields: dict,
                                             code: str) -> None:
    relay = await start_relay(nursery, relay_db)
    await register(make_client(tmp_path / "a", relay.port), "alice")
    async with open_connection("127.0.0.1", relay.port) as connection:
        await connection.pushes.receive()
        fields = dict(request_fields)  # the parameters are shared by both stores' runs
        kind = fields.pop("type")
        with pytest.raises(ServerError) as caught:
            await connection.request(kind, **fields)
        assert caught.value.code == code
        assert (await connection.request("ping"))["ok"] is True  # the connection survives


async def test_replayed_auth_signature_fails(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    alice = make_client(tmp_path / "a", relay.port)
    await register(alice, "alice")
    dik = alice.state.protocol.identity_key_pair()
    async with open_connection("127.0.0.1", relay.port) as first:
        nonce = (await first.pushes.receive())["nonce"]
        signature = dik.sign(api.auth_message(nonce, "alice", 0))
        await first.request("auth", account="alice", device_id=0, signature=signature)
    async with open_connection("127.0.0.1", relay.port) as second:
        await second.pushes.receive()
        with pytest.raises(ServerError) as caught:
            await second.request("auth", account="alice", device_id=0, signature=signature)
        assert caught.value.code == api.AUTH_FAILED


async def test_another_devices_signature_fails(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    await register(make_client(tmp_path / "a", relay.port), "alice")
    mallory = IdentityKeyPair.generate()
    async with open_connection("127.0.0.1", relay.port) as connection:
        nonce = (await connection.pushes.receive())["nonce"]
        with pytest.raises(ServerError) as caught:
            await connection.request("auth", account="alice", device_id=0,
                                     signature=mallory.sign(api.auth_message(nonce, "alice", 0)))
        assert caught.value.code == api.AUTH_FAILED


async def test_fan_out_mismatch_names_devices_and_stores_nothing(nursery, tmp_path: Path,
                                                                 relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    alice = make_client(tmp_path / "a", relay.port)
    await register(alice, "alice")
    await register(make_client(tmp_path / "b", relay.port), "bob")
    async with session_of(alice) as a:
        await a.send_text("bob", "make a session")
        cipher = a.cipher
        good = cipher.encrypt(Address("bob", 0), b"x").encode()
        stale = Envelope(Address("alice", 0), Address("bob", 7),
                         Envelope.decode(good).message).encode()
        for envelopes, missing, stale_list in (
                ([], [["bob", 0]], []), ([good, stale], [], [["bob", 7]]),
                ([stale], [["bob", 0]], [["bob", 7]])):
            with pytest.raises(ServerError) as caught:
                await a.connection.request("send", to="bob", envelopes=envelopes)
            assert caught.value.code == api.DEVICE_MISMATCH
            assert caught.value.details["missing"] == missing
            assert caught.value.details["stale"] == stale_list
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[good, good])
        assert caught.value.code == api.DEVICE_MISMATCH
        forged = Envelope(Address("carol", 0), Address("bob", 0),
                          Envelope.decode(good).message).encode()
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[forged])
        assert caught.value.code == api.BAD_REQUEST
        with pytest.raises(ServerError) as caught:
            await a.connection.request("send", to="bob", envelopes=[b"\xc1"])
        assert caught.value.code == api.BAD_REQUEST
    assert len(await relay.store.pending("bob", 0, 0, 100)) == 1  # only the first, real message


async def test_rate_limit(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db,
                              RelayConfig(requests_per_second=0.001, request_burst=3))
    async with open_connection("127.0.0.1", relay.port) as connection:
        await connection.pushes.receive()
        for _ in range(3):
            await connection.request("ping")
        with pytest.raises(ServerError) as caught:
            await connection.request("ping")
        assert caught.value.code == api.RATE_LIMITED


async def test_bad_signed_prekey_refused(nursery, tmp_path: Path, relay_db) -> None:
    relay = await start_relay(nursery, relay_db)
    alice = make_client(tmp_path / "a", relay.port)
    await register(alice, "alice")
    async with session_of(alice) as a:
        with pytest.raises(ServerError) as caught:
            await a.connection.request("publish_prekeys",
                                       signed_prekey=[5, bytes(range(32)), bytes(64)])
        assert caught.value.code == api.BAD_REQUEST
        with pytest.raises(ServerError) as caught:
            await a.connection.request("publish_prekeys", one_time_prekeys=[[1, b"short"]])
        assert caught.value.code == api.BAD_REQUEST


async def test_auth_timeout(nursery, tmp_path: Path, autojump_clock) -> None:
    """A connection that never authenticates is told so and closed (virtual time)."""
    relay = await start_relay(nursery, tmp_path / "relay.db", RelayConfig(auth_timeout=5))
    start = trio.current_time()
    frames = await _raw_exchange(relay.port, b"")
    assert frames[0]["type"] == "challenge"
    assert frames[-1]["error"]["code"] == api.NOT_AUTHENTICATED
    assert trio.current_time() - start >= 5


async def test_undecryptable_delivery_is_dropped_with_a_notice(nursery, tmp_path: Path,
                                                               relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    async with session_of(alice) as a:
        await a.send_text("bob", "fine")
        envelope = a.cipher.encrypt(Address("bob", 0), b"x")
        broken = Envelope(envelope.sender, envelope.recipient, envelope.message._replace(
            ciphertext=bytes(len(envelope.message.ciphertext))), envelope.prekey).encode()
        await a.connection.request("send", to="bob", envelopes=[broken])
        await a.send_text("bob", "still fine")
    got = await drain(bob)
    assert [m.text for m in got if m.warning is None] == ["fine", "still fine"]
    assert any(m.warning and "cannot be read" in m.warning for m in got)
    assert (await relay.store.pending("bob", 0, 0, 10)) == []


def _register_fields(nonce: bytes, version: int = 1, same_keys: bool = False) -> dict:
    aik = IdentityKeyPair.generate()
    dik = aik if same_keys else IdentityKeyPair.generate()
    signed = DeviceList("carol", version, ((0, dik.public_key),)).sign(aik)
    return {"account": "carol", "account_key": aik.public_key.raw,
            "device_list": signed.body, "device_list_signature": signed.signature,
            "signature": dik.sign(api.auth_message(nonce, "carol", 0))}


@pytest.mark.parametrize("version,same_keys,accepted", [
    (1, False, True), (2, False, False), (0, False, False), (1, True, False)])
async def test_register_needs_list_version_1_and_distinct_account_and_device_keys(
        nursery, tmp_path: Path, relay_db, version: int, same_keys: bool, accepted: bool) -> None:
    relay = await start_relay(nursery, relay_db)
    async with open_connection("127.0.0.1", relay.port) as connection:
        challenge = await connection.pushes.receive()
        fields = _register_fields(challenge["nonce"], version, same_keys)
        if accepted:
            assert (await connection.request("register", **fields))["device_id"] == 0
        else:
            with pytest.raises(ServerError) as caught:
                await connection.request("register", **fields)
            assert caught.value.code == api.BAD_REQUEST
            assert (await connection.request("ping"))["ok"] is True


@pytest.mark.parametrize("kind", [["ping"], {"ping": 1}, [], {}, b"ping", 1.5])
async def test_a_request_type_that_is_not_a_string_is_refused(
        nursery, tmp_path: Path, kind: object, caplog: pytest.LogCaptureFixture) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db")
    await register(make_client(tmp_path / "a", relay.port), "alice")
    async with open_connection("127.0.0.1", relay.port) as connection:
        await connection.pushes.receive()
        with pytest.raises(ServerError) as caught:
            await connection.request(kind, account="alice")  # type: ignore[arg-type]
        assert caught.value.code == api.BAD_REQUEST
        assert "must be a string" in str(caught.value)
        assert (await connection.request("ping"))["ok"] is True  # the connection survives
    assert "internal error" not in caplog.text


async def test_frames_over_the_request_limits_are_refused(nursery, tmp_path: Path) -> None:
    """Nesting or width past relay_api.REQUEST_LIMITS closes only that connection."""
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    deep = {"seqs": [[[[]]]]}  # within the limits: the handler refuses it, the connection stays
    million = msgpack.packb({"id": 1, "type": "ack", "seqs": [[[]] * 1000] * 1000})
    async with session_of(alice) as a:
        with pytest.raises(ServerError) as caught:
            await a.connection.request("ack", **deep)
        assert caught.value.code == api.BAD_REQUEST
        await a.connection.stream.send_all(_frame(million))
        with trio.fail_after(5):
            while (error := await a.connection.pushes.receive())["type"] != "error":
                pass  # queue_empty
        assert error["code"] == api.BAD_REQUEST
        assert "arrays and maps" in error["message"]
    async with session_of(alice) as a:  # the relay serves on
        await a.send_text("bob", "still here")
    assert len(await relay.store.pending("bob", 0, 0, 10)) == 1


async def test_a_malformed_frame_right_after_authentication_ends_the_connection(
        nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Authenticated by a frame in the same read as a malformed one: closed, not an error."""
    relay = await start_relay(nursery, tmp_path / "relay.db")
    stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
    decoder = FrameDecoder()
    while (challenge := decoder.next_frame()) is None:
        decoder.feed(await stream.receive_some(65536))
    register_frame = {"id": 1, "type": "register", **_register_fields(challenge["nonce"])}
    frames = await _raw_exchange_on(stream, decoder, encode_frame(register_frame)
                                    + b"\x00\x00\x00\x00")
    assert frames[0] == {"id": 1, "ok": True, "account": "carol", "device_id": 0}
    assert frames[-1]["error"]["code"] == api.BAD_REQUEST
    assert "internal error" not in caplog.text


async def test_a_backlog_longer_than_a_batch_and_a_write_arrives_whole_in_order(
        nursery, tmp_path: Path, relay_db) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, db=relay_db)
    texts = [f"{n:04d} " + "x" * 2000 for n in range(250)]  # 2 batches and a half, ~500 KB
    async with session_of(alice) as a:
        for text in texts:
            await a.send_text("bob", text)
    got = await drain(bob)
    assert [r.text for r in got] == texts
    assert await relay.store.pending("bob", 0, 0, 10) == []  # every one acknowledged

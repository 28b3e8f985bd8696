"""A client trusts no server (issue 11, items 14-17): whatever a hostile or broken server
sends, the client answers with a clear error or ignores it, and never crashes or obeys."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from client.core.bundles import start_sessions
from client.core.connection import Connection, RequestTimeout
from client.core.errors import ClientError
from client.private.prekeys import ONE_TIME_PREKEY_TARGET
from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.keys import IdentityKeyPair, SignedPreKey, X25519PrivateKey
from e2e_proto.stores import MemoryProtocolStore
from e2e_proto.wire import FrameDecoder, encode_frame
from tests.relay_harness import drain, make_client, register, relay_with_alice_and_bob

# -- 15, 16: answers with odd ids; a server that never answers ---------------------------------


async def _serve_one_request(server: trio.abc.Stream, answers: list[dict]) -> None:
    decoder = FrameDecoder()
    while (request := decoder.next_frame()) is None:
        decoder.feed(await server.receive_some(65536))
    for answer in answers:
        await server.send_all(encode_frame({**answer, "id": answer.get("id", request["id"])}))


@pytest.mark.parametrize("odd_id", [[1], {"a": 1}, "1", 1.0, True])
async def test_an_answer_with_a_list_or_map_id_is_ignored(odd_id: object) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    connection = Connection(client_stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.read_loop)
        nursery.start_soon(_serve_one_request, server_stream,
                           [{"id": odd_id, "ok": True, "odd": 1}, {"ok": True, "real": 1}])
        answer = await connection.request("ping")
        assert answer.get("real") == 1
        nursery.cancel_scope.cancel()


async def test_a_server_that_never_answers_times_out(autojump_clock) -> None:
    client_stream, _silent = trio.testing.memory_stream_pair()
    connection = Connection(client_stream, request_timeout=7)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.read_loop)
        start = trio.current_time()
        with pytest.raises(RequestTimeout, match="within 7 seconds"):
            await connection.request("auth", account="alice")
        assert trio.current_time() - start == pytest.approx(7)
        nursery.cancel_scope.cancel()


# -- 14: bad, malformed and missing bundles ------------------------------------------------


def _bundle(device_id: int, identity: IdentityKeyPair, signed_by: IdentityKeyPair) -> list:
    spk = SignedPreKey.create(signed_by, 5, X25519PrivateKey.generate())
    return [device_id, identity.public_key.raw, 5, spk.public_key.raw, spk.signature, None, None]


def _store() -> MemoryProtocolStore:
    return MemoryProtocolStore(IdentityKeyPair.generate())


@pytest.mark.parametrize("case", ["good", "bad signature", "other key", "missing", "malformed",
                                  "not a list", "unasked", "twice"])
def test_bundles_are_checked_before_a_session_is_made(case: str) -> None:
    bob, mallory = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    bundles: object = {
        "good": [_bundle(0, bob, bob)],
        "bad signature": [_bundle(0, bob, mallory)],
        "other key": [_bundle(0, mallory, mallory)],
        "missing": [],
        "malformed": [[0, b"short", 5]],
        "not a list": {"0": 1},
        "unasked": [_bundle(3, bob, bob)],
        "twice": [_bundle(0, bob, bob), _bundle(0, bob, bob)],
    }[case]
    store = _store()
    if case == "good":
        start_sessions(store, "bob", [0], bundles, {0: bob.public_key}, lambda n: bytes(n))
        assert store.load_session(Address("bob", 0)) is not None
        return
    with pytest.raises(ClientError) as caught:
        start_sessions(store, "bob", [0], bundles, {0: bob.public_key}, lambda n: bytes(n))
    assert "\n" not in str(caught.value)
    assert store.load_session(Address("bob", 0)) is None


async def test_a_bad_signed_prekey_signature_is_a_clear_error(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    relay.store._db.execute("UPDATE devices SET spk_signature = ? WHERE account = 'bob'",
                            (bytes(64),))
    async with alice.session() as session:
        with pytest.raises(ClientError, match="bob.0"):
            await session.send_text("bob", "hello")
    assert alice.state.protocol.load_session(Address("bob", 0)) is None


# -- 17: pushes out of range -----------------------------------------------------------------


@pytest.mark.parametrize("count", [-200_000, 2**63, "5", 3.5, None, [1]])
async def test_a_prekeys_low_push_out_of_range_is_ignored(nursery, tmp_path: Path,
                                                          count: object) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    before = (await relay.store.one_time_prekey_count("alice", 0))
    async with alice.session() as session:
        await relay.server.notify(Address("alice", 0), {"type": "prekeys_low", "count": count})
        await relay.server.notify(Address("alice", 0), {"type": "prekeys_low", "count": 5})
        await session.receive(lambda message: None, wait=0.5)
    # The bad pushes changed nothing; the valid one (5 held) topped up to the target only.
    after = await relay.store.one_time_prekey_count("alice", 0)
    assert after == before + ONE_TIME_PREKEY_TARGET - 5
    assert len(alice.state.protocol.one_time_prekey_ids()) <= 2 * ONE_TIME_PREKEY_TARGET


@pytest.mark.parametrize("count", [{"count": -200_000}, {"count": "5"}, {"count": 3.5},
                                   {"count": None}, {"count": [1]}, {}])
async def test_catch_up_checks_a_prekeys_low_push_as_receive_does(nursery, tmp_path: Path,
                                                                  count: dict) -> None:
    """A group command's catch-up neither crashes on a bad count nor obeys one (finding 11)."""
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    before = await relay.store.one_time_prekey_count("alice", 0)
    async with alice.session() as session:
        await session.catch_up()  # this connection's backlog, up to its queue_empty
        for push in ({"type": "prekeys_low", **count}, {"type": "prekeys_low", "count": 5},
                     {"type": "queue_empty"}):
            await relay.server.notify(Address("alice", 0), push)
        await session.catch_up()
    after = await relay.store.one_time_prekey_count("alice", 0)
    assert after == before + ONE_TIME_PREKEY_TARGET - 5


@pytest.mark.parametrize("device_id", [2**40, 0, -1, "1", None])
async def test_a_link_approval_with_a_bad_device_id_is_refused(nursery, tmp_path: Path,
                                                               device_id: object) -> None:
    relay = await _relay_with(nursery, tmp_path, "alice")
    laptop = make_client(tmp_path / "laptop", relay.port)
    async with laptop.connect() as waiting:
        await waiting.request_link("alice", "laptop")
        connection = next(iter(relay.server.waiting_links.values()))
        connection.push({"type": "link_approved", "device_id": device_id})
        with pytest.raises(ClientError, match="invalid device id"):
            await waiting.wait_for_link()
    assert laptop.state.pending_link() is None or laptop.state.pending_link()[3] is None
    async with laptop.connect() as again:  # a later link starts cleanly
        assert await again.resume_link() is None


async def test_a_malformed_delivery_is_ignored_with_a_notice(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    async with bob.session() as session:
        await relay.server.notify(Address("bob", 0),
                                  {"type": "deliver", "seq": -1, "envelope": b""})
        await relay.server.notify(Address("bob", 0), {"type": "deliver", "seq": 1, "envelope": [1]})
        shown = []
        await session.receive(shown.append, wait=0.5)
    assert [m.warning is not None for m in shown] == [True, True]
    async with alice.session() as session:
        await session.send_text("bob", "still works")
    assert [m.text for m in await drain(bob)] == ["still works"]


async def _relay_with(nursery, tmp_path: Path, name: str):
    from tests.relay_harness import start_relay
    relay = await start_relay(nursery, tmp_path / "relay.db")
    await register(make_client(tmp_path / name, relay.port), name)
    return relay


del api  # imported for readers: the push and answer fields are those of relay_api

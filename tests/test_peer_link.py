"""The server-to-server link: its handshake, its sealed frames, and the client and listener
each server runs."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from e2e_proto.errors import DecryptionError, InvalidSignatureError, MalformedError
from e2e_proto.peer_link import Handshake
from server.common.requests import RequestError
from server.federation.channel import PeerLinkError, accept, connect
from server.federation.peer import PeerClient, PeerRefused, PeerUnavailable, serve_peer
from tests.fault_support import free_port

KEY = bytes(range(32))


def _handshake(key: bytes = KEY) -> Handshake:
    return Handshake(key, "private", "social", secrets.token_bytes(32), secrets.token_bytes(32))


def test_each_side_proves_the_key_and_a_reflected_handshake_is_refused() -> None:
    handshake = _handshake()
    handshake.check_hello(handshake.hello())
    handshake.check_welcome(handshake.welcome())
    other = Handshake(bytes(32), handshake.connector, handshake.acceptor,
                      handshake.acceptor_nonce, handshake.connector_nonce)
    with pytest.raises(InvalidSignatureError):
        handshake.check_hello(other.hello())
    with pytest.raises(InvalidSignatureError):  # the welcome is not the hello sent back
        handshake.check_welcome(handshake.hello())
    with pytest.raises(MalformedError):
        Handshake(KEY, "social", "social", handshake.acceptor_nonce, handshake.connector_nonce)
    with pytest.raises(MalformedError):
        Handshake(KEY, "private", "social", b"short", handshake.connector_nonce)


@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8))
def test_frames_open_in_order_once(frames: list[bytes]) -> None:
    handshake = _handshake()
    sealer, _ = handshake.channel(connector_side=True)
    _, opener = handshake.channel(connector_side=False)
    sealed = [sealer.seal(frame) for frame in frames]
    assert [opener.open(s) for s in sealed] == frames
    with pytest.raises(DecryptionError):  # a replay of the first
        opener.open(sealed[0])


@given(st.binary(max_size=100))
def test_nothing_opens_but_the_next_frame(garbage: bytes) -> None:
    handshake = _handshake()
    sealer, _ = handshake.channel(connector_side=True)
    _, opener = handshake.channel(connector_side=False)
    first, second = sealer.seal(b"one"), sealer.seal(b"two")
    for wrong in (garbage, second, first[:-1] + bytes([first[-1] ^ 1])):
        with pytest.raises((DecryptionError, MalformedError)):
            opener.open(wrong)
    # A frame sealed for the other direction does not open in this one.
    _, connector_opener = handshake.channel(connector_side=True)
    with pytest.raises(DecryptionError):
        connector_opener.open(first)
    assert opener.open(first) == b"one"  # failures changed nothing


async def _pair(connector_key: bytes, acceptor_key: bytes) -> tuple[Any, Any]:
    left, right = trio.testing.memory_stream_pair()
    results: dict[str, Any] = {}

    async def run(name: str, function: Any, stream: Any, key: bytes, role: str) -> None:
        try:
            results[name] = await function(stream, key, role)
        except PeerLinkError as exc:
            results[name] = exc
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "acceptor", accept, right, acceptor_key, "social")
        nursery.start_soon(run, "connector", connect, left, connector_key, "private")
    return results["connector"], results["acceptor"]


async def test_a_channel_carries_sealed_frames_both_ways() -> None:
    connector, acceptor = await _pair(KEY, KEY)
    assert (connector.peer_role, acceptor.peer_role) == ("social", "private")
    await connector.send({"id": 1, "type": "ping"})
    assert await acceptor.receive() == {"id": 1, "type": "ping"}
    await acceptor.send({"id": 1, "ok": True})
    assert await connector.receive() == {"id": 1, "ok": True}


async def test_a_peer_without_the_key_is_refused_by_both_sides() -> None:
    connector, acceptor = await _pair(KEY, bytes(32))
    assert isinstance(connector, PeerLinkError) and isinstance(acceptor, PeerLinkError)


async def test_client_and_listener(nursery) -> None:
    port = free_port()

    async def echo(frame: dict[str, Any]) -> dict[str, Any]:
        if frame.get("refuse"):
            raise RequestError("cross_disabled", "no", missing=[["x", 1]])
        return {"echo": frame.get("value")}

    scope = trio.CancelScope()

    async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await serve_peer({"echo": echo}, KEY, "social", "127.0.0.1", port,
                             task_status=task_status)

    client = PeerClient(KEY, "private", [("127.0.0.1", port)], timeout=5)
    with pytest.raises(PeerUnavailable):  # nothing listens yet
        await client.request("echo", value=1)
    await nursery.start(listen)
    assert (await client.request("echo", value=2))["echo"] == 2
    with pytest.raises(PeerRefused) as refused:
        await client.request("echo", refuse=True)
    assert refused.value.code == "cross_disabled" and refused.value.details["missing"]
    with pytest.raises(PeerRefused, match="unknown peer request"):
        await client.request("nothing")
    scope.cancel()  # the listener (and the connection it served) goes away
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(PeerUnavailable):
        await client.request("echo", value=3)
    await nursery.start(serve_peer, {"echo": echo}, KEY, "social", "127.0.0.1", port)
    assert (await client.request("echo", value=4))["echo"] == 4  # reconnects on its own
    wrong = PeerClient(bytes(32), "private", [("127.0.0.1", port)], timeout=5)
    with pytest.raises(PeerUnavailable):
        await wrong.request("echo", value=5)


async def test_a_client_of_several_nodes_uses_the_next_when_one_goes(nursery) -> None:
    """The social server's link to relay nodes: the first address that answers serves, and
    when it goes away the next request reaches the next one (none listening: unavailable)."""
    ports = [free_port() for _ in range(3)]
    scopes = {port: trio.CancelScope() for port in ports}

    async def node(port: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                   ) -> None:
        async def which(frame: dict[str, Any]) -> dict[str, Any]:
            return {"node": port}

        with scopes[port]:
            await serve_peer({"which": which}, KEY, "social", "127.0.0.1", port,
                             task_status=task_status)

    client = PeerClient(KEY, "private", [("127.0.0.1", port) for port in ports], timeout=5)
    await nursery.start(node, ports[1])  # the first address has no listener
    assert (await client.request("which"))["node"] == ports[1]
    await nursery.start(node, ports[2])
    assert (await client.request("which"))["node"] == ports[1]  # it stays while it answers
    scopes[ports[1]].cancel()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(PeerUnavailable):  # the request in flight fails: nothing is resent
        await client.request("which")
    assert (await client.request("which"))["node"] == ports[2]
    scopes[ports[2]].cancel()
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(PeerUnavailable):
        await client.request("which")
    with pytest.raises(PeerUnavailable):  # none listens
        await client.request("which")

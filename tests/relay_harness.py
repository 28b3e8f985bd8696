"""Test harness: an in-process relay on port 0 and clients with their own homes."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

from client.private import PrivateClient, PrivateSession, Received
from client.state import ClientState
from server.relay import Relay, RelayConfig
from server.relay_main import serve
from server.relay_store import SqliteRelayStore


@dataclass
class RunningRelay:
    """A relay serving on 127.0.0.1:port until its cancel scope is cancelled."""

    relay: Relay
    store: SqliteRelayStore
    port: int
    scope: trio.CancelScope
    stopped: trio.Event
    received: bytearray = field(default_factory=bytearray)

    async def stop(self) -> None:
        """Stop serving and wait until the listener and the database are closed."""
        self.scope.cancel()
        await self.stopped.wait()


class RecordingStream(trio.abc.Stream):
    """A stream wrapper that keeps a copy of every byte received from the client."""

    def __init__(self, inner: trio.abc.Stream, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.inner.receive_some(max_bytes)
        self.sink += data
        return data

    async def send_all(self, data: bytes) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def start_relay(nursery: trio.Nursery, db: Path, config: RelayConfig | None = None,
                      port: int = 0, record: bool = False,
                      tls: ssl.SSLContext | None = None) -> RunningRelay:
    """Start a relay on ``db`` in ``nursery``; optionally record every received byte."""
    store = SqliteRelayStore(db)
    relay = Relay(store, config)
    scope = trio.CancelScope()
    stopped = trio.Event()
    received = bytearray()
    if record:
        original = relay.handle_stream

        async def recording(stream: trio.abc.Stream, peer: str = "?") -> None:
            await original(RecordingStream(stream, received), peer)

        relay.handle_stream = recording  # type: ignore[method-assign]

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                async with trio.open_nursery() as inner:
                    listeners = await inner.start(serve, relay, "127.0.0.1", port, tls)
                    socket_listener = listeners[0].transport_listener if tls else listeners[0]
                    task_status.started(socket_listener.socket.getsockname()[1])
        finally:
            store.close()
            stopped.set()

    bound = await nursery.start(run)
    return RunningRelay(relay, store, bound, scope, stopped, received)


def make_client(home: Path, port: int, tls: ssl.SSLContext | None = None) -> PrivateClient:
    """A client with its own home folder."""
    return PrivateClient(ClientState(home), "127.0.0.1", port, tls)


async def register(client: PrivateClient, name: str) -> None:
    """Register ``name`` from ``client``."""
    async with client.connect() as session:
        await session.register(name)


async def drain(client: PrivateClient) -> list[Received]:
    """Everything queued for the client's device."""
    got: list[Received] = []
    async with client.session() as session:
        await session.receive(got.append)
    return got


@contextlib.asynccontextmanager
async def session_of(client: PrivateClient) -> AsyncIterator[PrivateSession]:
    """An authenticated session."""
    async with client.session() as session:
        yield session


async def link(primary: PrivateClient, new: PrivateClient, account: str,
               name: str = "device") -> int:
    """Link ``new`` to ``account`` through its ``primary``; returns the new device id."""
    async with new.connect() as waiting:
        code = await waiting.request_link(account, name)
        async with primary.session() as session:
            device_id = await session.approve(code)
        assert await waiting.wait_for_link() == device_id
        await waiting.ensure_prekeys()
    return device_id

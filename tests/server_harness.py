"""Test harness shared by the relay's and the social server's: serving in-process on a port."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import trio


class StreamServer(Protocol):
    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None: ...


ServerT = TypeVar("ServerT", bound=StreamServer)
StoreT = TypeVar("StoreT")


@dataclass
class RunningServer(Generic[ServerT, StoreT]):
    """A server serving on 127.0.0.1:port until stopped (its store closed when it stops)."""

    server: ServerT
    store: StoreT
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


async def start_server(nursery: trio.Nursery, server: ServerT, store: StoreT,
                       serve: Callable[..., Awaitable[None]], port: int = 0,
                       tls: ssl.SSLContext | None = None, record: bool = False,
                       closing: Callable[[], None] | None = None
                       ) -> RunningServer[ServerT, StoreT]:
    """Serve ``server`` with ``serve`` in ``nursery``; optionally record every received byte.

    When it stops, ``closing()`` runs (default: ``store.close()``).
    """
    scope = trio.CancelScope()
    stopped = trio.Event()
    received = bytearray()
    if record:
        original = server.handle_stream

        async def recording(stream: trio.abc.Stream, peer: str = "?") -> None:
            await original(RecordingStream(stream, received), peer)

        server.handle_stream = recording  # type: ignore[method-assign]

    async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                async with trio.open_nursery() as inner:
                    listeners: Any = await inner.start(serve, server, "127.0.0.1", port, tls)
                    socket_listener = listeners[0].transport_listener if tls else listeners[0]
                    task_status.started(socket_listener.socket.getsockname()[1])
        finally:
            (closing or store.close)()  # type: ignore[attr-defined]
            stopped.set()

    bound = await nursery.start(run)
    return RunningServer(server, store, bound, scope, stopped, received)

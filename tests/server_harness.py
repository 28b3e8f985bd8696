"""Test harness shared by the relay's and the social server's: serving in-process on a port."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import trio
import trio.testing

from e2e_proto.wire import FrameDecoder, encode_frame


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


class MemoryPeer:
    """A bare frame connection to an in-process server over a memory stream (virtual time)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()
        self.closed = False
        self._frames: list[dict[str, Any]] = []  # received, not yet returned
        self._next_id = 1

    async def _receive(self) -> None:
        data = await self.stream.receive_some(65536)
        self.closed = not data
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            self._frames.append(frame)

    async def read(self) -> list[dict[str, Any]]:
        """Every frame until the server closes the stream or is silent for a (virtual) second."""
        while not self.closed:
            with trio.move_on_after(1) as silent:
                await self._receive()
            if silent.cancelled_caught:
                break
        frames, self._frames = self._frames, []
        return frames

    async def close(self) -> None:
        """Hang up, and return once the server has handled it."""
        await self.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request; its answer (``ok`` or ``error``), however long it takes (frames
        before it stay for :meth:`read`)."""
        self._next_id += 1
        request_id = self._next_id
        await self.stream.send_all(encode_frame({"id": request_id, "type": kind, **fields}))
        while True:
            for frame in self._frames:
                if frame.get("id") == request_id:
                    self._frames.remove(frame)
                    return frame
            if self.closed:
                raise AssertionError(f"the server closed without answering {kind}")
            await self._receive()


async def connect(nursery: trio.Nursery, server: StreamServer, peer: str) -> MemoryPeer:
    """A :class:`MemoryPeer` connected to ``server`` as if from ``peer`` (``"host:port"``)."""
    client, served = trio.testing.memory_stream_pair()
    nursery.start_soon(server.handle_stream, served, peer)
    return MemoryPeer(client)

"""A trio client of the daemon's Unix socket: calls matched to answers by id, notifications
on a channel. The CLI's client mode uses it; so do the tests and the benchmark."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from ..core.connection import ConnectionLost, reader_running
from .jsonrpc import LineBuffer, LineTooLong, RpcError, encode

MAX_ANSWER_BYTES = 64 << 20
"""The longest line accepted from the daemon."""
RETRY_DELAY = 0.05
"""Seconds between attempts to reach a daemon that is starting."""


class DaemonClient:
    """One connection to a daemon: :meth:`call` and :attr:`notifications`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._notify, self.notifications = trio.open_memory_channel[dict[str, Any]](
            float("inf"))
        self._lock = trio.Lock()

    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; its result, or :class:`RpcError` with the daemon's error."""
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        try:
            async with self._lock:
                await self.stream.send_all(encode({"jsonrpc": "2.0", "id": request_id,
                                                   "method": method, "params": params}))
            answer = await receive.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
            raise ConnectionLost("the daemon closed the connection") from None
        finally:
            self._waiting.pop(request_id, None)
        error = answer.get("error")
        if error is not None:
            raise RpcError(error.get("code", 0), error.get("message", "error"), error.get("data"))
        return answer.get("result")

    async def read_loop(self) -> None:
        """Read answers and notifications until the daemon closes the connection."""
        lines = LineBuffer(MAX_ANSWER_BYTES)
        try:
            while data := await self.stream.receive_some(65536):
                lines.feed(data)
                while (line := lines.next_line()) is not None:
                    message = json.loads(line)
                    if isinstance(message, dict) and "method" in message:
                        self._notify.send_nowait(message)
                    elif isinstance(message, dict):
                        channel = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
                        if channel is not None:
                            channel.send_nowait(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError, LineTooLong, ValueError):
            pass
        finally:
            for channel in self._waiting.values():
                channel.close()
            self._notify.close()


@contextlib.asynccontextmanager
async def open_daemon(socket: Path, wait: float = 10.0) -> AsyncIterator[DaemonClient]:
    """Connect to the daemon at ``socket`` (retrying for ``wait`` seconds while it starts)."""
    stream: trio.SocketStream | None = None
    with trio.move_on_after(wait):
        while stream is None:
            try:
                stream = await trio.open_unix_socket(str(socket))
            except OSError:
                await trio.sleep(RETRY_DELAY)  # the daemon holds the home but is starting
    if stream is None:
        raise ConnectionLost(f"the daemon serving {socket.parent} does not answer on {socket}")
    client = DaemonClient(stream)
    try:
        async with reader_running(client.read_loop):
            yield client
    finally:
        await trio.aclose_forcefully(stream)

"""Frames a server pushes to one connection outside the request flow (call notices), queued.

Invariant: pushing never waits: a connection too slow to read its pushes loses the newest
ones (logged), so it cannot slow down whoever pushes to it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio


class Outbox:
    """A bounded queue of push frames for one connection, written by :meth:`run`."""

    def __init__(self, capacity: int, logger: logging.Logger, owner: str) -> None:
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](capacity)
        self._logger = logger
        self._owner = owner

    def push(self, frame: dict[str, Any]) -> None:
        """Queue ``frame``; dropped (and logged) when the queue is full."""
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self._logger.warning("dropped a push to %s: its outbox is full", self._owner)
        except trio.ClosedResourceError:
            pass  # the connection has ended

    async def run(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Write the queued frames with ``send`` until cancelled."""
        async for frame in self._receive:
            await send(frame)

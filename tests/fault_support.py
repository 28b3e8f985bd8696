"""Fault-test helpers shared by the relay's and the social server's tests.

A server as a real child process to SIGKILL, a client loop that reconnects with backoff across
those kills, a storage fault (read-only or full disk) switched on and off under a running
server's store, and frames that never complete or trickle in (slow loris).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import trio
import trio.testing

from client.core.connection import ConnectionLost, ServerError
from client.core.errors import ClientError
from client.private.received import Received
from client.private.session import PrivateSession
from e2e_proto.payload import Payload
from e2e_proto.wire import FrameDecoder
from storage.redis_server import free_port as free_port  # the servers' tests use it too

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m MODULE serve [OPTIONS]`` in a child process; ready once it logs that it
    listens.

    ``db`` is an SQLite file (``--db``) or a store URL (``--store``, the relay's Redis).
    """

    module: str  # the server's entry point, e.g. ``server.relay.main``
    what: str  # how a failure to start names it

    def __init__(self, db: Path | str, port: int, options: Sequence[str] = ()) -> None:
        self.port = port
        self.lines: list[str] = []
        store = ["--store", db] if isinstance(db, str) else ["--db", str(db)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "serve", "--listen", f"127.0.0.1:{port}",
             *store, *options], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.kill()
            pytest.fail(f"{self.what} did not start: " + "".join(self.lines))

    def kill(self) -> None:
        """SIGKILL the server (if it still runs) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


class RelayProcess(ServerProcess):
    """``e2e-relay serve`` in a child process."""

    module = "server.relay.main"
    what = "relay"


class SocialProcess(ServerProcess):
    """``e2e-social serve`` in a child process.

    Password hashing runs at the default (INTERACTIVE) cost: about 0.1 s a registration here, and
    the clients reconnect with their tokens, which cost no hashing.
    """

    module = "server.social.main"
    what = "social server"


@contextlib.contextmanager
def linked_servers(directory: Path, key_file: Path) -> Iterator[tuple[int, int]]:
    """A relay and a social server process joined by the server-to-server link (both keyed by
    ``key_file``), their databases in ``directory``; yields their client ports."""
    relay_port, social_port, relay_peer, social_peer = (free_port() for _ in range(4))
    relay = RelayProcess(directory / "relay.db", relay_port, [
        "--peer-listen", f"127.0.0.1:{relay_peer}", "--peer-social",
        f"127.0.0.1:{social_peer}", "--peer-key-file", str(key_file)])
    try:
        social = SocialProcess(directory / "social.db", social_port, [
            "--peer-listen", f"127.0.0.1:{social_peer}", "--peer-relay",
            f"127.0.0.1:{relay_peer}", "--peer-key-file", str(key_file)])
        try:
            yield relay_port, social_port
        finally:
            social.kill()
    finally:
        relay.kill()


SessionT = TypeVar("SessionT")


async def send_and_receive(open_session: Callable[[], AbstractAsyncContextManager[PrivateSession]],
                           outbox: list[tuple[str, Payload]], inbox: list[Received],
                           done: trio.Event, sent: Callable[[], None] = lambda: None) -> None:
    """Send every payload of ``outbox`` in order and keep receiving into ``inbox`` until
    ``done``, across server deaths (:func:`reconnecting`).

    A payload leaves ``outbox`` once the relay acknowledged it (then ``sent()`` runs), and is
    never sent again; one that failed is sent again, the same payload (the same payload id).
    """

    async def work(session: PrivateSession) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.receive, inbox.append, float("inf"))
            while outbox:
                peer, payload = outbox[0]
                await session.send_payload(peer, payload)
                outbox.pop(0)
                sent()
            await done.wait()
            nursery.cancel_scope.cancel()

    await reconnecting(open_session, work)


async def reconnecting(open_session: Callable[[], AbstractAsyncContextManager[SessionT]],
                       work: Callable[[SessionT], Awaitable[None]]) -> None:
    """Run ``work`` on a session until it returns, reconnecting across server deaths.

    A lost connection, a client error, a server error (``unavailable`` while a store is down)
    or an OSError means reconnecting after a backoff that starts at 0.05 s, doubles up to 1 s
    and starts again once a session opens.
    """
    delay = 0.05
    while True:
        try:
            async with open_session() as session:
                delay = 0.05
                await work(session)
                return
        except* (ConnectionLost, ClientError, ServerError, OSError):
            pass
        await trio.sleep(delay)  # reconnection backoff
        delay = min(delay * 2, 1.0)


def start_storage_fault(db: sqlite3.Connection, fault: str) -> None:
    """Make a server's store ``read-only``, or full (``disk-full``: no page may be added)."""
    if fault == "read-only":
        db.execute("PRAGMA query_only = ON")
    else:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def end_storage_fault(db: sqlite3.Connection) -> None:
    """Undo :func:`start_storage_fault` (either fault)."""
    db.execute("PRAGMA query_only = OFF")
    db.execute("PRAGMA max_page_count = 1073741823")


async def answers_to_a_stalled_frame(port: int) -> tuple[list[dict[str, Any]], float]:
    """Start a frame that never completes; every frame the server sends until it closes the
    connection, and how long (``trio.current_time``) that took."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(struct.pack(">I", 100) + b"\x81")  # a frame that never completes
    decoder = FrameDecoder()
    frames = []
    start = trio.current_time()
    while chunk := await stream.receive_some(65536):
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
    return frames, trio.current_time() - start


class StreamServer(Protocol):
    """A server that serves one client stream per call (the relay, the social server)."""

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None: ...


async def answers_to_a_trickled_frame(server: StreamServer, interval: float
                                      ) -> tuple[list[dict[str, Any]], float]:
    """Trickle a 100-byte frame one byte every ``interval`` seconds over a memory stream.

    Every frame the server sends until it closes the connection, and how long after the
    frame's first byte (``trio.current_time``) it closed it.
    """
    client, served = trio.testing.memory_stream_pair()
    frames: list[dict[str, Any]] = []
    decoder = FrameDecoder()

    async def trickle() -> None:
        for byte in struct.pack(">I", 100) + b"\x81" + bytes(99):
            try:
                await client.send_all(bytes([byte]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            await trio.sleep(interval)  # the attacker's pace (virtual time)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, served, "192.0.2.1:4000")
        start = trio.current_time()
        nursery.start_soon(trickle)
        while chunk := await client.receive_some(65536):
            decoder.feed(chunk)
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return frames, took

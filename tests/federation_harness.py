"""Test harness: an in-process relay and social server joined by the server-to-server link,
each on port 0 with its peer listener on a free port, and clients of both. The relay runs on
either store (an SQLite file in the folder, or a ``redis://`` URL)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import trio

from client.private.session import PrivateClient
from client.social.session import SocialClient
from server.federation.options import PeerSetup
from server.federation.relay import RelayFederation
from server.federation.social import SocialFederation
from server.relay.server import Relay
from server.social.main import serve as serve_social
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore
from tests import relay_harness, social_harness
from tests.fault_support import free_port
from tests.relay_harness import RunningRelay, StoreLocation
from tests.server_harness import start_server
from tests.social_harness import FAST, RunningSocial


@dataclass
class Federated:
    """A relay and a social server that know each other, and the cancel scopes of their
    peer links."""

    relay: RunningRelay
    social: RunningSocial
    key: bytes
    relay_peer: trio.CancelScope
    social_peer: trio.CancelScope
    relay_from_peer: bytearray = field(default_factory=bytearray)
    """Every request the relay took from the social server, opened (with ``record``)."""
    social_from_peer: bytearray = field(default_factory=bytearray)
    """Every request the social server took from the relay, opened (with ``record``)."""

    @property
    def relay_server(self) -> Relay:
        return self.relay.server

    @property
    def social_server(self) -> SocialServer:
        return self.social.server

    async def shared(self) -> None:
        """Wait until the relay handed the social server everything it queued."""
        federation = self.relay_server.federation
        assert federation is not None
        with trio.fail_after(10):
            await federation.drained.wait()

    def private(self, home: Path) -> PrivateClient:
        """A private client with its own home."""
        return relay_harness.make_client(home, self.relay.port)

    def social_client(self, home: Path) -> SocialClient:
        """A social client with its own home."""
        return social_harness.make_client(home, self.social.port)


async def _run_peer(scope: trio.CancelScope, federation: RelayFederation | SocialFederation,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await federation.run(task_status=task_status)


async def start_federated(nursery: trio.Nursery, folder: Path, record: bool = False,
                          db: StoreLocation | None = None) -> Federated:
    """Both servers on databases in ``folder`` (the relay on ``db`` if given), linked with a
    fresh key (``record``: keep every byte each receives from its clients)."""
    key = secrets.token_bytes(32)
    relay_port, social_port = free_port(), free_port()
    social_store = SqliteSocialStore(folder / "social.db")
    social = SocialServer(social_store, FAST)
    social.federation = SocialFederation(social, PeerSetup(
        ("127.0.0.1", social_port), (("127.0.0.1", relay_port),), key))
    scopes = trio.CancelScope(), trio.CancelScope()
    relay_from_peer, social_from_peer = bytearray(), bytearray()

    async def link_to_social(relay: Relay, inner: trio.Nursery) -> None:
        relay.federation = RelayFederation(relay, PeerSetup(
            ("127.0.0.1", relay_port), (("127.0.0.1", social_port),), key))
        if record:
            _record_requests(relay.federation.routes, relay_from_peer)
        await inner.start(_run_peer, scopes[0], relay.federation)

    if record:
        _record_requests(social.federation.routes, social_from_peer)
    await nursery.start(_run_peer, scopes[1], social.federation)
    running_relay = await relay_harness.start_relay(
        nursery, db or folder / "relay.db", record=record, prepare=link_to_social)
    running_social = await start_server(nursery, social, social_store, serve_social,
                                        record=record)
    return Federated(running_relay, running_social, key, *scopes, relay_from_peer,
                     social_from_peer)


async def opted_in(folder: Path, relay_port: int, social_port: int, private: str = "alice",
                   social: str = "bob") -> tuple[PrivateClient, SocialClient]:
    """``private`` registered at the relay on ``relay_port`` and ``social`` at the social server
    on ``social_port``, each in its home in ``folder``, both taking cross-transport chats."""
    alice = relay_harness.make_client(folder / private, relay_port)
    bob = social_harness.make_client(folder / social, social_port)
    await relay_harness.register(alice, private)
    await social_harness.register(bob, social)
    async with relay_harness.session_of(alice) as a:
        await a.cross_set(True)
    async with social_harness.session_of(bob) as b:
        assert (await b.cross_on()).outcome == "made"
    return alice, bob


def _record_requests(routes: dict[str, Any], sink: bytearray) -> None:
    """Keep a copy (msgpack) of every request the peer handlers are given."""
    for kind, handler in list(routes.items()):
        async def recording(frame: dict[str, Any], handler: Any = handler) -> dict[str, Any]:
            sink.extend(msgpack.packb(frame))
            return await handler(frame)  # type: ignore[no-any-return]
        routes[kind] = recording


SERVER_LOGGERS = ("e2e.relay", "e2e.social")
"""The servers' loggers (each server's side of the peer link logs under its own)."""


class LogCopy(logging.Handler):
    """Every record of the servers' loggers, formatted, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        """All the lines."""
        return "\n".join(self.lines)


@contextmanager
def server_logs(*names: str) -> Iterator[LogCopy]:
    """A copy of what the loggers ``names`` (and their children; by default both servers')
    log at every level, for the duration of the block."""
    loggers = [logging.getLogger(name) for name in names or SERVER_LOGGERS]
    levels = [logger.level for logger in loggers]
    copy = LogCopy()
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(copy)
    try:
        yield copy
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(copy)
            logger.setLevel(level)


def database_bytes(path: Path) -> bytes:
    """A database file and its WAL, as bytes (what a look at the disk finds)."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())

"""Test harness: an in-process relay on port 0 and clients with their own homes.

A relay's state is an SQLite file (a :class:`~pathlib.Path`) or a store URL (``redis://...``):
the ``relay_db`` fixture gives either, so a test runs against both stores.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import trio

from client.private.received import Received
from client.private.session import PrivateClient, PrivateSession
from client.private.state import ClientState
from server.calls.registry import SfuGrant
from server.relay.backends import open_backend
from server.relay.config import RelayConfig
from server.relay.main import serve
from server.relay.server import Relay
from server.relay.store import RelayStore
from tests.server_harness import RunningServer, start_server

RunningRelay = RunningServer[Relay, RelayStore]
StoreLocation = Path | str
"""An SQLite file, or a store URL such as ``redis://127.0.0.1:6379/0``."""


def store_url(db: StoreLocation) -> str:
    """The ``--store`` of ``db``."""
    return db if isinstance(db, str) else f"sqlite:{db}"


Prepare = Callable[[Relay, trio.Nursery], Awaitable[None]]
"""Called with a new relay, before it serves, and a nursery that lives as long as its store."""


async def start_relay(nursery: trio.Nursery, db: StoreLocation,
                      config: RelayConfig | None = None, port: int = 0, record: bool = False,
                      tls: ssl.SSLContext | None = None, blob_dir: Path | None = None,
                      sfu: SfuGrant | None = None, prepare: Prepare | None = None
                      ) -> RunningRelay:
    """Start a relay on ``db`` in ``nursery``; optionally record every received byte. Its
    blobs go to ``blob_dir`` (default: beside an SQLite file, or a fresh folder); calls are
    refused unless it names a forwarding unit (``sfu``); ``prepare`` may add to it (a link to
    a social server) before it serves."""
    return await nursery.start(_run_relay, store_url(db), config, port, record, tls, blob_dir,
                               sfu, prepare)


async def _run_relay(location: str, config: RelayConfig | None, port: int, record: bool,
                     tls: ssl.SSLContext | None, blob_dir: Path | None, sfu: SfuGrant | None,
                     prepare: Prepare | None,
                     task_status: trio.TaskStatus[RunningRelay] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Serve a relay on the store at ``location``; the store outlives the server (its hub and
    connections end first)."""
    async with open_backend(location) as (store, hub), trio.open_nursery() as inner:
        relay = Relay(store, config, hub=hub, blob_dir=blob_dir, sfu=sfu)
        if prepare is not None:
            await prepare(relay, inner)
        task_status.started(await start_server(inner, relay, store, serve, port, tls, record,
                                               closing=lambda: None))


def make_client(home: Path, port: int, tls: ssl.SSLContext | None = None) -> PrivateClient:
    """A client with its own home folder."""
    return PrivateClient(ClientState(home), "127.0.0.1", port, tls)


async def relay_with_alice_and_bob(nursery: trio.Nursery, tmp_path: Path,
                                   config: RelayConfig | None = None, record: bool = False,
                                   db: StoreLocation | None = None
                                   ) -> tuple[RunningRelay, PrivateClient, PrivateClient]:
    """A fresh relay on ``db`` (default ``tmp_path/relay.db``) with alice and bob registered,
    each in its home."""
    relay = await start_relay(nursery, db or tmp_path / "relay.db", config, record=record,
                              blob_dir=tmp_path / "relay-blobs")
    alice = make_client(tmp_path / "alice", relay.port)
    bob = make_client(tmp_path / "bob", relay.port)
    await register(alice, "alice")
    await register(bob, "bob")
    return relay, alice, bob


async def register(client: PrivateClient, name: str) -> None:
    """Register ``name`` from ``client``."""
    async with client.connect() as session:
        await session.register(name)


async def register_under_a_new_key(relay: RunningRelay, account: str,
                                   home: Path) -> PrivateClient:
    """``account`` re-created under the same name with a new key, from a new client in
    ``home``: the key swap a hostile relay could make."""
    for table in ("one_time_prekeys", "mailbox", "devices", "accounts"):
        relay.store._db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))
    relay.store._accounts.pop(account, None)
    swapped = make_client(home, relay.port)
    await register(swapped, account)
    return swapped


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

"""Test harness: an in-process social server on port 0, clients with their own homes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nacl.pwhash
import trio

from client.core.connection import Connection, open_connection
from client.social.session import SocialClient, SocialSession
from client.social.state import SocialEvent, SocialState
from server.social.config import SocialConfig
from server.social.main import serve
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore
from tests.server_harness import RunningServer, start_server

PASSWORD = "correct horse battery staple"
FAST = SocialConfig(password_opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                    password_memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
"""Argon2id at libsodium's MIN limits, so that hundreds of accounts take well under a second."""


RunningSocial = RunningServer[SocialServer, SqliteSocialStore]


async def start_social(nursery: trio.Nursery, db: Path, config: SocialConfig = FAST,
                       clock: Callable[[], float] | None = None,
                       record: bool = False) -> RunningSocial:
    """Start a social server on ``db`` in ``nursery``; optionally record every received byte."""
    store = SqliteSocialStore(db)
    server = SocialServer(store, config) if clock is None else SocialServer(store, config, clock)
    return await start_server(nursery, server, store, serve, record=record)


async def social_with_alice_and_bob(nursery: trio.Nursery, tmp_path: Path,
                                   config: SocialConfig = FAST
                                   ) -> tuple[RunningSocial, SocialClient, SocialClient]:
    """A fresh server on ``tmp_path/social.db`` with alice and bob registered, each in its home."""
    social = await start_social(nursery, tmp_path / "social.db", config)
    alice = make_client(tmp_path / "alice", social.port)
    bob = make_client(tmp_path / "bob", social.port)
    await register(alice, "alice")
    await register(bob, "bob")
    return social, alice, bob


def make_client(home: Path, port: int) -> SocialClient:
    """A device with its own home folder."""
    return SocialClient(SocialState(home), "127.0.0.1", port)


async def register(client: SocialClient, name: str, password: str = PASSWORD) -> int:
    """Register ``name`` from ``client``; the device id."""
    async with client.connect() as session:
        return await session.register(name, password)


async def login(client: SocialClient, name: str, password: str = PASSWORD) -> int:
    """Log ``client`` in as ``name``; the device id."""
    async with client.connect() as session:
        return await session.login(name, password)


async def drain(client: SocialClient) -> list[SocialEvent]:
    """Every event waiting for the device."""
    got: list[SocialEvent] = []
    async with client.session() as session:
        await session.receive(got.append)
    return got


@contextlib.asynccontextmanager
async def session_of(client: SocialClient) -> AsyncIterator[SocialSession]:
    """A logged-in session."""
    async with client.session() as session:
        yield session


@contextlib.asynccontextmanager
async def raw(port: int) -> AsyncIterator[Connection]:
    """A bare frame connection, for requests a well-behaved client never sends."""
    async with open_connection("127.0.0.1", port) as connection:
        yield connection


async def raw_register(port: int, name: str, password: str = PASSWORD) -> dict[str, Any]:
    """Register ``name`` over a bare connection; the response (with its token)."""
    async with raw(port) as connection:
        return await connection.request("register", account=name, password=password)

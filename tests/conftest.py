"""Fixtures shared by the relay's tests: one Redis server per run, and a relay store of each
kind (the contract: both stores answer every request the same way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.redis_server import LocalRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A ``redis-server`` for the whole run (tests that kill one start their own)."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    yield server
    server.kill()


@pytest.fixture(params=["sqlite", "redis"])
def relay_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the test's relay keeps its state: an SQLite file, or an emptied Redis."""
    if request.param == "sqlite":
        return tmp_path / "relay.db"
    server: LocalRedis = request.getfixturevalue("redis_server")
    server.flush()
    return server.url()

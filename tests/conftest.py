"""Fixtures shared by the relay's tests: a relay store of each kind (the contract: every
store answers every request the same way)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite"])
def relay_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the test's relay keeps its state."""
    return tmp_path / "relay.db"

"""A bounded run of the load test for CI (``make load`` runs 200 clients for 60 s)."""

from __future__ import annotations

from pathlib import Path

from tests.fault_support import RelayProcess, free_port
from tests.load import run_load


async def test_small_load_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    relay = RelayProcess(tmp_path / "relay.db", port)
    try:
        report = await run_load(tmp_path, port, clients=12, seconds=3, rate=2)
    finally:
        relay.kill()
    figures = report.summary()
    assert report.sent > 10
    assert (figures["errors"], figures["lost"], figures["duplicated"]) == (0, 0, 0)
    assert report.deliveries == report.expected_deliveries > report.sent

"""A bounded load test: many clients on loopback sending to one another through a relay.

``python -m tests.load --clients 200 --seconds 60`` (``make load``) starts ``e2e-relay`` in a
child process, registers the clients (every tenth account also has a linked device, so sends fan
out), lets every client send to random others for the given time while receiving, waits for
the mailboxes to drain, and reports throughput, latency percentiles, errors and messages lost or
duplicated. It exits non-zero unless errors, lost and duplicated are all 0.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from client.private.received import Received
from client.private.session import PrivateClient
from client.private.state import ClientState
from tests.fault_support import RelayProcess, free_port
from tests.relay_harness import link, register


@dataclass
class LoadReport:
    """What a load run measured."""

    clients: int
    devices: int
    seconds: float
    sent: int = 0
    expected_deliveries: int = 0
    deliveries: int = 0
    duplicates: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The figures as a JSON-able dict."""
        ordered = sorted(self.latencies) or [0.0]

        def percentile(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

        return {
            "clients": self.clients, "devices": self.devices, "seconds": self.seconds,
            "messages_sent": self.sent, "deliveries_expected": self.expected_deliveries,
            "deliveries": self.deliveries,
            "messages_per_second": round(self.sent / self.seconds, 1),
            "deliveries_per_second": round(self.deliveries / self.seconds, 1),
            "latency_ms_p50": percentile(0.50), "latency_ms_p99": percentile(0.99),
            "latency_ms_mean": round(statistics.fmean(ordered) * 1000, 2),
            "errors": len(self.errors), "lost": self.lost, "duplicated": self.duplicates,
        }


async def run_load(root: Path, port: int, clients: int, seconds: float,
                   rate: float = 0.5, seed: int = 1) -> LoadReport:
    """Drive ``clients`` accounts against the relay on ``port`` for ``seconds``."""
    rng = random.Random(seed)
    names = [f"user{i:03d}" for i in range(clients)]
    primaries = {n: PrivateClient(ClientState(root / n), "127.0.0.1", port) for n in names}
    linked: dict[str, list[PrivateClient]] = {n: [] for n in names}
    for name in names:
        await register(primaries[name], name)
    for name in names[::10]:
        extra = PrivateClient(ClientState(root / f"{name}-2"), "127.0.0.1", port)
        await link(primaries[name], extra, name)
        linked[name].append(extra)
    devices = {n: [primaries[n], *linked[n]] for n in names}
    report = LoadReport(clients, sum(len(d) for d in devices.values()), seconds)
    sent_at: dict[str, float] = {}
    expected: Counter[str] = Counter()
    got: Counter[tuple[str, str]] = Counter()
    stop_sending = trio.Event()

    def on_message(device_key: str) -> object:
        def handle(message: Received) -> None:
            if message.warning is not None:
                report.errors.append(message.warning)
                return
            tag = (message.text or "").split(" ", 1)[0]
            got[(tag, device_key)] += 1
            if got[(tag, device_key)] > 1:
                report.duplicates += 1
            elif not message.outgoing and tag in sent_at:
                report.latencies.append(time.monotonic() - sent_at[tag])
        return handle

    async def device_loop(name: str, index: int, client: PrivateClient) -> None:
        async with client.session() as session:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.receive, on_message(f"{name}/{index}"), float("inf"))
                if index == 0:
                    while not stop_sending.is_set():
                        await trio.sleep(rng.expovariate(rate))  # the load's own pacing
                        if stop_sending.is_set():
                            break
                        peer = rng.choice([n for n in names if n != name])
                        tag = f"{name}-{report.sent}"
                        expected[tag] = len(devices[peer]) + len(devices[name]) - 1
                        sent_at[tag] = time.monotonic()
                        try:
                            await session.send_text(peer, f"{tag} load")
                            report.sent += 1
                        except Exception as exc:  # counted and reported, never hidden
                            report.errors.append(f"send: {exc!r}")
                            del expected[tag]
                await drained.wait()
                nursery.cancel_scope.cancel()

    drained = trio.Event()
    async with trio.open_nursery() as nursery:
        for name in names:
            for index, client in enumerate(devices[name]):
                nursery.start_soon(device_loop, name, index, client)
        await trio.sleep(seconds)  # the length of the load run
        stop_sending.set()
        with trio.move_on_after(60):
            while sum(min(c, 1) for c in got.values()) < sum(expected.values()):
                await trio.sleep(0.2)  # polling the counters for the end of the drain
        drained.set()
    report.expected_deliveries = sum(expected.values())
    report.deliveries = sum(min(c, 1) for c in got.values())
    report.lost = report.expected_deliveries - report.deliveries
    for client in [c for ds in devices.values() for c in ds]:
        client.state.close()
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line of the load test."""
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=0.5, help="messages per second per client")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="e2e-load-") as folder:
        root = Path(folder)
        port = free_port()
        # Every client registers from 127.0.0.1; in a real deployment each has its address.
        relay = RelayProcess(root / "relay.db", port,
                             ["--registrations-per-hour", str(2 * args.clients)])
        try:
            report = trio.run(run_load, root, port, args.clients, args.seconds, args.rate)
        finally:
            relay.kill()
    figures = report.summary()
    for name, value in figures.items():
        print(f"{name:>22}: {value}")
    for error in report.errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not report.errors and report.lost == 0 and report.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

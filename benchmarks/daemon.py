"""The daemon's overhead: one message at a time from a sender to a receiver, both ways of using
the client, over the same relay process.

- ``library``: the sender's :class:`~client.private.session.PrivateClient` session in this
  process (``send_text``), the receiver's in a process of its own (its ``receive`` handler
  writes each text to a pipe), as two programs using the library would;
- ``daemon``: bot -> daemon -> relay -> daemon -> bot: one ``e2e-chat daemon`` process per
  account, and two bots here on their Unix sockets (the sender's ``send`` call, the receiver's
  subscription, acknowledging each message before the next is sent).

Each message's latency runs from the sender's call to the receiver's handler or notification;
the loop is closed (the next message leaves once this one arrived), so messages/s is the
round trip's rate. Both clients keep their state in SQLite (synchronous=FULL) as deployed. Only
127.0.0.1 and a temporary folder are used.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from client.daemon.client import DaemonClient, open_daemon
from client.private.received import Received
from client.private.session import PrivateClient
from client.private.state import ClientState

from .relay import start_relay

Progress = Callable[[str], None]
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Exchange:
    """One way's figures: messages, seconds, and the latencies in seconds."""

    way: str
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0..100), in seconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else (
            math.nan)

    def figures(self) -> dict[str, Any]:
        """The JSON figures."""
        return {"way": self.way, "messages": self.messages,
                "messages_per_second": self.rate, "p50_seconds": self.percentile(50),
                "p99_seconds": self.percentile(99)}


async def _closed_loop(count: int, warmup: int, send: Callable[[str], Awaitable[None]],
                       arrived: trio.MemoryReceiveChannel[str], way: str) -> Exchange:
    """Send ``warmup + count`` messages one at a time; time the last ``count``."""
    latencies = []
    clock = time.perf_counter
    started = 0.0
    for i in range(warmup + count):
        if i == warmup:
            started = clock()
        text = f"benchmark {i}"
        sent_at = clock()
        await send(text)
        while await arrived.receive() != text:
            pass
        if i >= warmup:
            latencies.append(clock() - sent_at)
    return Exchange(way, count, clock() - started, latencies)


async def _library(home: Path, port: int, count: int, warmup: int) -> Exchange:
    alice = ClientState(home / "alice")
    arrive, arrived = trio.open_memory_channel[str](math.inf)
    receiver = await trio.lowlevel.open_process(
        [sys.executable, "-m", "benchmarks.daemon", str(home / "bob"), str(port)],
        cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert receiver.stdout is not None
        lines = _lines(receiver.stdout)
        assert await lines.__anext__() == "ready"
        async with PrivateClient(alice, HOST, port).session() as sender, \
                trio.open_nursery() as nursery:
            async def read() -> None:
                async for line in lines:
                    arrive.send_nowait(line)

            async def send(text: str) -> None:
                await sender.send_text("bob", text)

            nursery.start_soon(read)
            result = await _closed_loop(count, warmup, send, arrived, "library")
            nursery.cancel_scope.cancel()
        return result
    finally:
        receiver.kill()
        await receiver.wait()
        alice.close()


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    """The lines a child process writes."""
    buffer = b""
    while data := await stream.receive_some(65536):
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode()


async def _receive_and_print(home: Path, port: int) -> None:
    """The library's receiver (a process of its own, like a daemon): each text as a line."""
    state = ClientState(home)

    def handler(message: Received) -> None:
        if message.text is not None:
            print(message.text, flush=True)

    try:
        async with PrivateClient(state, HOST, port).session() as session:
            await session.receive(handler)  # the backlog, then announce readiness
            print("ready", flush=True)
            await session.receive(handler, math.inf)
    finally:
        state.close()


async def _daemons(home: Path, count: int, warmup: int) -> Exchange:
    async with _bot(home / "alice") as sender, _bot(home / "bob") as receiver:
        await receiver.call("subscribe")
        arrive, arrived = trio.open_memory_channel[str](math.inf)

        async def receive() -> None:
            async for note in receiver.notifications:
                params = note["params"]
                if note["method"] == "message":
                    arrive.send_nowait(params["text"])
                    await receiver.call("ack", ids=[params["event_id"]])

        async def send(text: str) -> None:
            await sender.call("send", name="bob", text=text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            result = await _closed_loop(count, warmup, send, arrived, "daemon")
            nursery.cancel_scope.cancel()
        return result


@asynccontextmanager
async def _bot(home: Path) -> AsyncIterator[DaemonClient]:
    async with open_daemon(home / "daemon.sock", START_TIMEOUT) as client:
        yield client


def _start_daemon(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "client.cli.main", "--home", str(home), "--relay",
             f"{HOST}:{port}", "daemon"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors,
            env={**os.environ, "E2E_PASSPHRASE": ""})


async def _register(home: Path, port: int, name: str) -> None:
    state = ClientState(home)
    try:
        async with PrivateClient(state, HOST, port).connect() as session:
            await session.register(name)
    finally:
        state.close()


def daemon_figures(count: int = 200, warmup: int = 20,
                   progress: Progress | None = None) -> dict[str, Any]:
    """The library's and the daemon's figures over one relay, and the daemon's overhead."""
    with tempfile.TemporaryDirectory(prefix="e2e-daemon-bench-") as folder:
        root = Path(folder)
        relay = start_relay("real", root / "relay.log", f"sqlite:{root / 'relay.db'}")
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            for name in ("alice", "bob"):
                trio.run(_register, root / name, relay.port, name)
            if progress:
                progress(f"daemon benchmark: library, {count} messages")
            library = trio.run(_library, root, relay.port, count, warmup)
            daemons = [_start_daemon(root / name, relay.port, root / f"{name}.log")
                       for name in ("alice", "bob")]
            if progress:
                progress(f"daemon benchmark: daemon, {count} messages")
            daemon = trio.run(_daemons, root, count, warmup)
        finally:
            for process in daemons:
                process.terminate()
                process.wait(30)
            relay.stop()
    return {"library": library.figures(), "daemon": daemon.figures(),
            "throughput_ratio": daemon.rate / library.rate if library.rate else math.nan,
            "p50_ratio": daemon.percentile(50) / library.percentile(50)}


def daemon_table(figures: dict[str, Any]) -> str:
    """The two ways side by side, and the daemon's overhead as ratios."""
    rows = []
    for way in ("library", "daemon"):
        row = figures[way]
        rows.append(f"{way:<8}  {row['messages_per_second']:>7.0f} msg/s  "
                    f"p50 {row['p50_seconds'] * 1000:6.2f} ms  "
                    f"p99 {row['p99_seconds'] * 1000:6.2f} ms")
    rows.append(f"daemon / library: throughput {figures['throughput_ratio']:.2f}x, "
                f"p50 latency {figures['p50_ratio']:.2f}x")
    return "\n".join(rows)


if __name__ == "__main__":
    trio.run(_receive_and_print, Path(sys.argv[1]), int(sys.argv[2]))

"""Relay figures over loopback: throughput and end-to-end latency, and RSS per idle connection.

The relay runs in a subprocess (:mod:`benchmarks.relay_server`), the clients here, so each has
a core. A pair is a sender and a receiver account with a session between them; the sender
encrypts a message carrying its send time, sends it and waits for the relay's answer before the
next (closed loop); the receiver decrypts every delivery, records the latency and acknowledges
the batch. The same clients drive the real relay and the bare trio forwarder. Every loop stops
at a deadline; only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from client.core.connection import Connection, open_connection
from e2e_proto import relay_api as api
from e2e_proto.devices import DeviceList
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.wire import Envelope, FrameDecoder, encode_frame

from .crypto import Device, established
from .relay_server import HOST, raise_fd_limit

Progress = Callable[[str], None]
MESSAGE_SIZE = 100
_STAMP = struct.Struct(">d")
SETUP_TIMEOUT = 120.0


@dataclass
class RelayProcess:
    """A relay subprocess and its port."""

    process: subprocess.Popen[str]
    port: int

    def rss(self) -> int:
        """Resident set size of the relay process, in bytes."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        """Close its stdin (it then stops) and wait; kill it if it does not."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_relay(kind: str, log: Path, db: Path | None = None) -> RelayProcess:
    """Start ``real`` (SQLite at ``db``) or ``bare``, stderr to ``log``; returns once it listens."""
    with open(log, "ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.relay_server", kind, str(db or "")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
            cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"relay server did not start: {log.read_text()[-2000:]}")
    return RelayProcess(process, int(line.split()[1]))


# -- accounts and pairs ---------------------------------------------------------------------------


@dataclass
class Account:
    """A registered account with one device (device 0)."""

    name: str
    device: Device
    aik: IdentityKeyPair = field(default_factory=IdentityKeyPair.generate)


async def _challenge(connection: Connection) -> bytes:
    with trio.fail_after(SETUP_TIMEOUT):
        frame = await connection.pushes.receive()
    return frame["nonce"]


async def register(port: int, account: Account) -> None:
    """Register ``account`` on the relay (one connection, then closed)."""
    async with open_connection(HOST, port) as connection:
        nonce = await _challenge(connection)
        dik = account.device.identity
        signed = DeviceList(account.name, 1, ((0, dik.public_key),)).sign(account.aik)
        await connection.request(
            "register", account=account.name, account_key=account.aik.public_key.raw,
            device_list=signed.body, device_list_signature=signed.signature,
            signature=dik.sign(api.auth_message(nonce, account.name, 0)))


def make_pairs(count: int) -> list[tuple[Account, Account]]:
    """``count`` sender/receiver accounts with an established session each way."""
    pairs = []
    for index in range(count):
        sender = Account(f"s{index}", Device(f"s{index}"))
        receiver = Account(f"r{index}", Device(f"r{index}"))
        established(sender.device, receiver.device)
        pairs.append((sender, receiver))
    return pairs


@dataclass
class LoadResult:
    """Messages per second and latency percentiles of one load run."""

    pairs: int
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        """Messages decrypted per second inside the measured window."""
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0..100) in seconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _authenticate(connection: Connection, account: Account) -> None:
    nonce = await _challenge(connection)
    await connection.request(
        "auth", account=account.name, device_id=0,
        signature=account.device.identity.sign(api.auth_message(nonce, account.name, 0)))


async def _run_load(port: int, pairs: list[tuple[Account, Account]], warmup: float,
                    duration: float) -> LoadResult:
    """Drive ``pairs`` for ``warmup + duration`` seconds; measure inside the last ``duration``."""
    body = bytes(MESSAGE_SIZE - _STAMP.size)
    events: list[tuple[float, float]] = []
    clock = time.perf_counter
    window = [math.inf, math.inf]
    ready = trio.Event()
    connected = [0]

    async def sender(account: Account, to: Account) -> None:
        async with open_connection(HOST, port) as connection:
            await _authenticate(connection, account)
            connected[0] += 1
            await ready.wait()
            cipher, remote = account.device.cipher, to.device.address
            while clock() < window[1]:
                envelope = cipher.encrypt(remote, _STAMP.pack(clock()) + body)
                await connection.request("send", to=to.name, envelopes=[envelope.encode()])

    async def receiver(account: Account) -> None:
        async with open_connection(HOST, port) as connection:
            await _authenticate(connection, account)
            connected[0] += 1
            decrypt = account.device.cipher.decrypt
            while True:  # until the nursery is cancelled
                frame = await connection.pushes.receive()
                seqs = []
                while True:
                    if frame.get("type") == "deliver":
                        plaintext = decrypt(Envelope.decode(frame["envelope"]))
                        now = clock()
                        events.append((now, now - _STAMP.unpack_from(plaintext)[0]))
                        seqs.append(frame["seq"])
                    try:
                        frame = connection.pushes.receive_nowait()
                    except trio.WouldBlock:
                        break
                for start in range(0, len(seqs), api.MAX_ACK_SEQS):
                    await connection.request("ack", seqs=seqs[start:start + api.MAX_ACK_SEQS])

    async with trio.open_nursery() as nursery:
        for sender_account, receiver_account in pairs:
            nursery.start_soon(receiver, receiver_account)
            nursery.start_soon(sender, sender_account, receiver_account)
        with trio.fail_after(SETUP_TIMEOUT):
            while connected[0] < 2 * len(pairs):
                await trio.sleep(0.01)
        now = clock()
        window[:] = [now + warmup, now + warmup + duration]
        ready.set()
        await trio.sleep(warmup + duration + 0.5)  # the last messages in flight arrive
        nursery.cancel_scope.cancel()
    inside = [latency for at, latency in events if window[0] <= at <= window[1]]
    return LoadResult(len(pairs), len(inside), duration, inside)


# -- idle connections -----------------------------------------------------------------------------


async def _read_frame(stream: trio.SocketStream, decoder: FrameDecoder) -> dict[str, Any]:
    while (frame := decoder.next_frame()) is None:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError("relay closed an idle connection")
        decoder.feed(data)
    return frame


async def _open_idle(port: int, account: Account, count: int,
                     streams: list[trio.SocketStream]) -> None:
    """Open and authenticate connections until ``streams`` holds ``count``."""
    limiter = trio.CapacityLimiter(64)
    dik = account.device.identity

    async def one() -> None:
        async with limiter:
            stream = await trio.open_tcp_stream(HOST, port)
            decoder = FrameDecoder()
            nonce = (await _read_frame(stream, decoder))["nonce"]
            signature = dik.sign(api.auth_message(nonce, account.name, 0))
            await stream.send_all(encode_frame({"id": 1, "type": "auth", "account": account.name,
                                                "device_id": 0, "signature": signature}))
            while (answer := await _read_frame(stream, decoder)).get("id") != 1:
                pass
            if answer.get("ok") is not True:  # an idle connection must really be authenticated
                raise RuntimeError(f"authentication refused: {answer.get('error')}")
            streams.append(stream)

    with trio.fail_after(SETUP_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(count - len(streams)):
                nursery.start_soon(one)


async def _memory(port: int, account: Account, relay: RelayProcess, counts: tuple[int, ...],
                  progress: Progress) -> dict[int, dict[str, float]]:
    await register(port, account)
    await trio.sleep(0.5)
    baseline = relay.rss()
    streams: list[trio.SocketStream] = []
    out: dict[int, dict[str, float]] = {}
    try:
        for count in counts:
            progress(f"relay memory: opening {count} idle authenticated connections")
            await _open_idle(port, account, count, streams)
            await trio.sleep(1.0)  # let the relay finish its per-connection work
            rss = relay.rss()
            out[count] = {"rss_bytes": rss, "baseline_rss_bytes": baseline,
                          "bytes_per_connection": (rss - baseline) / count}
    finally:
        for stream in streams:
            await trio.aclose_forcefully(stream)
    return out


# -- the whole relay section ----------------------------------------------------------------------


def relay_figures(pair_counts: tuple[int, ...] = (2, 16, 64), warmup: float = 0.5,
                  duration: float = 2.0, rounds: int = 1,
                  idle_counts: tuple[int, ...] = (1000, 5000),
                  progress: Progress = lambda _: None) -> dict[str, Any]:
    """Throughput and latency against the real and bare relays, and idle-connection memory."""
    raise_fd_limit(max(idle_counts, default=0) + 1000)
    results: dict[str, Any] = {"load": [], "memory": {}}
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        if idle_counts:
            relay = start_relay("real", Path(tmp) / "relay.log", Path(tmp) / "memory.db")
            try:
                mem = trio.run(_memory, relay.port, Account("idle", Device("idle")), relay,
                               idle_counts, progress)
            finally:
                relay.stop()
            results["memory"] = {str(k): v for k, v in mem.items()}
        if not pair_counts:
            return results
        pairs = make_pairs(max(pair_counts))
        real = start_relay("real", Path(tmp) / "relay.log", Path(tmp) / "relay.db")
        bare = start_relay("bare", Path(tmp) / "bare.log")
        try:
            progress("relay: registering accounts")

            async def register_all() -> None:
                for sender, receiver in pairs:
                    await register(real.port, sender)
                    await register(real.port, receiver)

            trio.run(register_all)
            for count in pair_counts:
                runs: dict[str, list[LoadResult]] = {"relay": [], "bare": []}
                for round_ in range(rounds):
                    order = [("bare", bare), ("relay", real)]
                    if round_ % 2:
                        order.reverse()
                    for name, process in order:
                        progress(f"relay load: {count} pairs, {name}, round {round_ + 1}")
                        runs[name].append(trio.run(_run_load, process.port, pairs[:count],
                                                   warmup, duration))
                for name, got in runs.items():
                    latencies = [x for r in got for x in r.latencies]
                    merged = LoadResult(count, sum(r.messages for r in got),
                                        sum(r.seconds for r in got), latencies)
                    results["load"].append({
                        "server": name, "pairs": count, "messages": merged.messages,
                        "seconds": merged.seconds, "messages_per_second": merged.rate,
                        "p50_seconds": merged.percentile(50),
                        "p99_seconds": merged.percentile(99),
                        "rounds_messages_per_second": [r.rate for r in got],
                    })
        finally:
            real.stop()
            bare.stop()
    return results


def fsync_cost(directory: str | None = None, samples: int = 50) -> float:
    """Median seconds of one small write + fsync where the relay database lives (context)."""
    with tempfile.NamedTemporaryFile(dir=directory) as handle:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            handle.write(b"x" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - start)
    return statistics.median(times)

"""Relay figures over loopback: throughput and end-to-end latency, and RSS per idle connection.

The relay runs in a subprocess (:mod:`benchmarks.relay_server`), the clients here, so each has
a core. A pair is a sender and a receiver account with a session between them; the sender
encrypts a message carrying its send time, sends it and waits for the relay's answer before the
next (closed loop); the receiver decrypts every delivery, records the latency and acknowledges
the batch. The same clients drive the bare trio forwarder, the relay on SQLite and the relay on
Redis with 1, 2 and 3 nodes (processes) on one ``redis-server``; with several nodes, pair ``i``
sends through node ``i mod n`` to a receiver on node ``i + 1 mod n``, so every message crosses
nodes. Every loop stops at a deadline; only 127.0.0.1 is ever contacted.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from client.core.connection import Connection, open_connection
from e2e_proto import relay_api as api
from e2e_proto.devices import DeviceList
from e2e_proto.errors import DuplicateMessageError
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.wire import Envelope, FrameDecoder, encode_frame
from storage.redis_server import LocalRedis, RedisServerError

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


def start_relay(kind: str, log: Path, store: str = "") -> RelayProcess:
    """Start ``real`` (on ``store``: ``sqlite:PATH`` or ``redis://...``) or ``bare``, stderr to
    ``log``; returns once it listens."""
    with open(log, "ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.relay_server", kind, store],
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


async def _run_load(ports: Sequence[int], pairs: list[tuple[Account, Account]], warmup: float,
                    duration: float) -> LoadResult:
    """Drive ``pairs`` for ``warmup + duration`` seconds; measure inside the last ``duration``.

    Pair ``i`` sends through ``ports[i % n]`` to a receiver on ``ports[(i + 1) % n]``.
    """
    body = bytes(MESSAGE_SIZE - _STAMP.size)
    events: list[tuple[float, float]] = []
    clock = time.perf_counter
    window = [math.inf, math.inf]
    ready = trio.Event()
    connected = [0]

    async def sender(account: Account, to: Account, port: int) -> None:
        async with open_connection(HOST, port) as connection:
            await _authenticate(connection, account)
            connected[0] += 1
            await ready.wait()
            cipher, remote = account.device.cipher, to.device.address
            while clock() < window[1]:
                envelope = cipher.encrypt(remote, _STAMP.pack(clock()) + body)
                await connection.request("send", to=to.name, envelopes=[envelope.encode()])

    async def receiver(account: Account, port: int) -> None:
        async with open_connection(HOST, port) as connection:
            await _authenticate(connection, account)
            connected[0] += 1
            decrypt = account.device.cipher.decrypt
            while True:  # until the nursery is cancelled
                frame = await connection.pushes.receive()
                seqs = []
                while True:
                    if frame.get("type") == "deliver":
                        try:
                            plaintext = decrypt(Envelope.decode(frame["envelope"]))
                        except DuplicateMessageError:  # decrypted in an earlier round whose
                            pass  # ack the end of that round cut off: acknowledged now
                        else:
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
        for index, (sender_account, receiver_account) in enumerate(pairs):
            nursery.start_soon(receiver, receiver_account, ports[(index + 1) % len(ports)])
            nursery.start_soon(sender, sender_account, receiver_account,
                               ports[index % len(ports)])
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


@dataclass
class Server:
    """What one row of the relay figures ran against: a name, its node count and their ports."""

    name: str
    nodes: int
    ports: list[int]


def _merged(server: Server, count: int, got: list[LoadResult]) -> dict[str, Any]:
    latencies = [x for r in got for x in r.latencies]
    merged = LoadResult(count, sum(r.messages for r in got), sum(r.seconds for r in got),
                        latencies)
    return {"server": server.name, "nodes": server.nodes, "pairs": count,
            "messages": merged.messages, "seconds": merged.seconds,
            "messages_per_second": merged.rate, "p50_seconds": merged.percentile(50),
            "p99_seconds": merged.percentile(99),
            "rounds_messages_per_second": [r.rate for r in got]}


def relay_figures(pair_counts: tuple[int, ...] = (2, 16, 64), warmup: float = 0.5,
                  duration: float = 2.0, rounds: int = 1,
                  idle_counts: tuple[int, ...] = (1000, 5000),
                  redis_nodes: tuple[int, ...] = (1, 2, 3),
                  redis_pair_counts: tuple[int, ...] = (16, 64),
                  progress: Progress = lambda _: None) -> dict[str, Any]:
    """Throughput and latency against the bare relay, the relay on SQLite and on Redis with
    each of ``redis_nodes`` nodes (at ``redis_pair_counts``), and idle-connection memory."""
    raise_fd_limit(max(idle_counts, default=0) + 1000)
    results: dict[str, Any] = {"load": [], "memory": {}, "notes": []}
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        if idle_counts:
            relay = start_relay("real", Path(tmp) / "relay.log", f"sqlite:{tmp}/memory.db")
            try:
                mem = trio.run(_memory, relay.port, Account("idle", Device("idle")), relay,
                               idle_counts, progress)
            finally:
                relay.stop()
            results["memory"] = {str(k): v for k, v in mem.items()}
        if not pair_counts:
            return results
        pairs = make_pairs(max(pair_counts + redis_pair_counts))
        processes = [start_relay("real", Path(tmp) / "relay.log", f"sqlite:{tmp}/relay.db"),
                     start_relay("bare", Path(tmp) / "bare.log")]
        servers = [Server("relay", 1, [processes[0].port]), Server("bare", 1, [processes[1].port])]
        register_on = [processes[0].port]  # one registration per store: the nodes share Redis
        redis: LocalRedis | None = None
        if redis_nodes:
            try:
                redis = LocalRedis(Path(tmp) / "redis")
            except RedisServerError as exc:
                results["notes"].append(f"relay on Redis not measured: {exc}")
        try:
            if redis is not None:
                nodes = [start_relay("real", Path(tmp) / "redis-nodes.log", redis.url())
                         for _ in range(max(redis_nodes))]
                processes += nodes
                servers += [Server("redis", n, [node.port for node in nodes[:n]])
                            for n in redis_nodes]
                register_on.append(nodes[0].port)
            progress("relay: registering accounts")

            async def register_all() -> None:
                for port in register_on:
                    for sender, receiver in pairs:
                        await register(port, sender)
                        await register(port, receiver)

            trio.run(register_all)
            cores = os.cpu_count() or 1
            if redis is not None and max(redis_nodes) + 2 > cores:
                results["notes"].append(
                    f"{cores} cores for {max(redis_nodes)} relay nodes, redis-server and the "
                    "load generator: more nodes share the same cores, so these figures show "
                    "what crossing nodes costs, not how throughput scales with nodes")
            for count in sorted(set(pair_counts) | set(redis_pair_counts)):
                runs: dict[int, list[LoadResult]] = {index: [] for index in range(len(servers))}
                order = [index for index, server in enumerate(servers)
                         if count in (redis_pair_counts if server.name == "redis"
                                      else pair_counts)]
                for round_ in range(rounds):
                    for index in (order if round_ % 2 == 0 else order[::-1]):
                        server = servers[index]
                        progress(f"relay load: {count} pairs, {server.name}"
                                 f"{f' x{server.nodes}' if server.name == 'redis' else ''}, "
                                 f"round {round_ + 1}")
                        runs[index].append(trio.run(_run_load, server.ports, pairs[:count],
                                                    warmup, duration))
                for index in order:
                    results["load"].append(_merged(servers[index], count, runs[index]))
        finally:
            for process in processes:
                process.stop()
            if redis is not None:
                redis.kill()
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

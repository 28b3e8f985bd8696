"""Call figures: SFrame beside raw AES-256-GCM, an 8-participant video call and a crowd of
audio senders through an ``e2e-sfu`` process, over loopback.

* **SFrame** (interleaved with the other hot-path cases): ``SenderContext.encrypt`` then
  ``ReceiverKeyring.decrypt`` of a 1 KiB frame, beside one raw libsodium AES-256-GCM seal and
  open of the same frame (a 12-byte nonce, an AAD as long as the SFrame header).
* **Video call**: the unit runs in its own process (its own core); 8 participants run here,
  each the client's real media code (:class:`~client.core.calls.ActiveCall`: synthetic frames,
  SFrame, a tag per datagram, decryption and checks), sending 4 KiB frames at 30 fps. Keys go
  from participant to participant in process (no signalling server: it is not what is timed).
  Loss is what the receivers' sequence numbers say (gaps between the first and the highest
  frame from each sender), latency is sender clock to receiver clock, decrypted and checked.
* **Audio crowd**: N participants each sending 160 B frames at 50 fps (SFrame-encrypted,
  tagged), everyone receiving everyone. Here the participants are light (one task sends for
  all; receivers count each sender's SFrame counter and time each datagram against its send
  time, without decrypting): the figure is the unit's. A sender's first half second is not
  counted; loss is what never arrived once the datagrams stop (queues drained). Swept over
  N, then 50 with last-N. Both processes' CPU use and the machine's load average are
  reported, so it is plain which one ran out and how busy the shared machine was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import nacl.utils
import trio

from client.core.calls import ActiveCall, Grant
from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey
from e2e_proto.call_media import StreamStats, fixed_profile, make_frame
from e2e_proto.call_tokens import issue_token
from e2e_proto.constants import MAX_CALL_DATAGRAM
from e2e_proto.sframe import ReceiverKeyring, SenderContext, decode_header, encode_header

from .crypto import Case

Progress = Callable[[str], None]
FRAME_SIZE = 1024
VIDEO_PARTICIPANTS, VIDEO_SIZE, VIDEO_FPS = 8, 4096, 30
AUDIO_SIZE, AUDIO_FPS = 160, 50
LAST_N = 3
WARMUP_FRAMES = AUDIO_FPS // 2
"""An audio sender's first half second is not counted (joins settle, last-N picks)."""
ROOT = Path(__file__).resolve().parent.parent


def sframe_cases() -> dict[str, Case]:
    """SFrame encrypt + decrypt of 1 KiB, and raw AES-256-GCM seal + open of it."""
    frame = nacl.utils.random(FRAME_SIZE)
    sender = SenderContext.generate()
    receiver = ReceiverKeyring()
    receiver.add(sender.kid, sender.base_key)
    key, nonce = nacl.utils.random(32), nacl.utils.random(12)
    aad = encode_header(0, 300)  # an SFrame header's length
    seal, open_ = sodium.crypto_aead_aes256gcm_encrypt, sodium.crypto_aead_aes256gcm_decrypt
    return {
        f"ours/sframe/{FRAME_SIZE}": lambda: receiver.decrypt(sender.encrypt(frame)),
        f"floor/aes-256-gcm/{FRAME_SIZE}": lambda: open_(seal(frame, aad, nonce, key), aad,
                                                         nonce, key),
    }


# -- the unit as a process --------------------------------------------------------------------


class UnitProcess:
    """``e2e-sfu serve`` on 127.0.0.1, port chosen by the system, with a fresh key file."""

    def __init__(self, folder: Path, last_n: int = 0) -> None:
        self.key = nacl.utils.random(32)
        key_file = folder / f"sfu-{last_n}.key"
        key_file.write_text(self.key.hex())
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.calls.main", "serve", "--listen", "127.0.0.1:0",
             "--key-file", str(key_file), "--stats-interval", "0", "--last-n", str(last_n),
             "--queue", "256"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.process.kill()
            raise RuntimeError("e2e-sfu did not start: " + "".join(self.lines))
        found = re.search(r"listening on ([\d.]+):(\d+)", "".join(self.lines))
        assert found is not None
        self.address = (found.group(1), int(found.group(2)))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the unit so far."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, int]:
        """Stop it (SIGINT) and return the counts it logs at the end."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for line in reversed(self.lines):
            if " stats " in line:
                return json.loads(line.split(" stats ", 1)[1])
        return {}


def _pooled(streams: list[StreamStats]) -> dict[str, Any]:
    """Loss and latency over several receivers' streams."""
    unique = sum(s.unique for s in streams)
    lost = sum(s.lost for s in streams)
    latencies = sorted(x for s in streams for x in s.latencies())

    def rank(fraction: float) -> float | None:  # nearest rank
        if not latencies:
            return None
        return latencies[max(0, math.ceil(fraction * len(latencies)) - 1)]

    return {"received": unique, "lost": lost,
            "loss": lost / (unique + lost) if unique + lost else None,
            "failed": sum(s.failed for s in streams),
            "no_key": sum(s.no_key for s in streams),
            "p50_seconds": rank(0.5), "p99_seconds": rank(0.99)}


# -- 8 participants, video --------------------------------------------------------------------


class LocalKeys:
    """Hands keys from participant to participant in this process (no signalling server)."""

    def __init__(self) -> None:
        self.calls: dict[Address, ActiveCall] = {}
        self.addresses: dict[int, Address] = {}

    async def call_send_key(self, key: CallKey, targets: list[Address]) -> None:
        """Give ``key`` to each target's call, as if over a pairwise session."""
        for target in targets:
            self.calls[target].on_key(self.addresses[key.participant], key)

    async def call_rejoin(self, call_id: bytes) -> Grant:
        """Not needed: the unit does not restart here."""
        raise RuntimeError("the benchmark's unit does not restart")

    async def call_leave(self, call_id: bytes) -> None:
        """Nothing to tell: there is no signalling server."""


def _grants(unit: UnitProcess, count: int) -> list[Grant]:
    call_id = nacl.utils.random(16)
    members = {pid: Address(f"p{pid}", 0) for pid in range(1, count + 1)}
    grants = []
    expires = int(time.time() * 1000) + 3_600_000
    for pid, address in members.items():
        token, packet_key = issue_token(unit.key, call_id, pid, address, expires, 255)
        host, port = unit.address
        grants.append(Grant(call_id, pid, (host, port), token, packet_key, 255, True,
                            dict(members)))
    return grants


async def video_call(seconds: float, participants: int = VIDEO_PARTICIPANTS,
                     progress: Progress | None = None) -> dict[str, Any]:
    """``participants`` sending 4 KiB frames at 30 fps for ``seconds`` through an e2e-sfu."""
    with tempfile.TemporaryDirectory() as folder:
        unit = UnitProcess(Path(folder))
        try:
            keys = LocalKeys()
            calls = []
            profile = fixed_profile(packets.VIDEO, VIDEO_FPS, VIDEO_SIZE)
            for grant in _grants(unit, participants):
                call = ActiveCall(keys, grant, profile, allowed=lambda _: True)
                address = grant.participants[grant.participant]
                keys.calls[address] = call
                keys.addresses[grant.participant] = address
                calls.append(call)
            if progress:
                progress(f"calls: {participants} participants, {VIDEO_SIZE} B video at "
                         f"{VIDEO_FPS} fps for {seconds:g} s")
            cpu_unit, cpu_here = unit.cpu_seconds(), time.process_time()
            async with trio.open_nursery() as nursery:
                for call in calls:
                    nursery.start_soon(call.run, seconds)
            cpu_unit, cpu_here = unit.cpu_seconds() - cpu_unit, time.process_time() - cpu_here
        finally:
            stats = unit.stop()
    streams = [s for call in calls for s in call.streams.values()]
    return {"participants": participants, "frame_bytes": VIDEO_SIZE, "fps": VIDEO_FPS,
            "seconds": seconds, "sent": sum(c.sent for c in calls), **_pooled(streams),
            "unit_in_per_second": stats.get("media", 0) / seconds,
            "unit_out_per_second": stats.get("forwarded", 0) / seconds,
            "unit": stats, "unit_cpu": cpu_unit / seconds, "clients_cpu": cpu_here / seconds}


# -- the audio crowd --------------------------------------------------------------------------


class _Light:
    """A light participant: a socket, its packet key, its SFrame sender and what it got."""

    def __init__(self, grant: Grant) -> None:
        self.pid = grant.participant
        self.grant = grant
        self.key = packets.PacketKey(grant.packet_key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.sender = SenderContext.generate()
        self.counter = 0
        self.streams: dict[int, StreamStats] = {}

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter


async def _join_all(crowd: list[_Light], unit: tuple[str, int]) -> None:
    for member in crowd:
        for _ in range(10):
            member.sock.sendto(packets.join_packet(member.key, member.pid, member.next_counter(),
                                                   0, member.grant.token), unit)
            with trio.move_on_after(1.0) as waiting:
                while True:
                    await trio.lowlevel.wait_readable(member.sock)
                    if packets.packet_type(member.sock.recv(MAX_CALL_DATAGRAM)) == (
                            packets.WELCOME):
                        break
            if not waiting.cancelled_caught:
                break
        else:
            raise RuntimeError("the unit does not admit a participant")


class _Arrivals:
    """When the last datagram reached any light participant (to wait for quiet)."""

    def __init__(self) -> None:
        self.last = 0.0


async def _receive(member: _Light, sent: dict[int, list[float]], arrivals: _Arrivals) -> None:
    sock, streams = member.sock, member.streams
    clock = time.perf_counter
    while True:
        await trio.lowlevel.wait_readable(sock)
        arrivals.last = trio.current_time()
        for _ in range(256):
            try:
                data = sock.recv(MAX_CALL_DATAGRAM)
            except BlockingIOError:
                break
            if data[0] & 0x0F != packets.FORWARD:
                continue
            sender = int.from_bytes(data[1:5], "big")
            _, ctr, _ = decode_header(data[packets.MEDIA_HEAD_SIZE:])
            if ctr < WARMUP_FRAMES:
                continue
            stats = streams.get(sender)
            if stats is None:
                stats = streams[sender] = StreamStats()
            stats.frame(ctr, clock() - sent[sender][ctr])
        else:
            await trio.lowlevel.checkpoint()


async def _quiet(arrivals: _Arrivals, quiet: float = 0.3, most: float = 10.0) -> None:
    """Wait until nothing has arrived for ``quiet`` seconds (at most ``most``)."""
    with trio.move_on_after(most):
        while trio.current_time() - arrivals.last < quiet:
            await trio.sleep(0.05)  # polling the arrivals of another process's datagrams


async def _send(crowd: list[_Light], unit: tuple[str, int], seconds: float,
                sent: dict[int, list[float]]) -> None:
    period = 1 / AUDIO_FPS
    clock = time.perf_counter
    deadline = trio.current_time()
    end = deadline + seconds
    seq = 0
    while deadline < end:
        for member in crowd:
            frame = make_frame(packets.AUDIO, seq, 0, AUDIO_SIZE)
            sframe = member.sender.encrypt(frame)
            sent[member.pid].append(clock())
            try:
                member.sock.sendto(packets.media_packet(
                    member.key, member.pid, member.next_counter(), packets.AUDIO,
                    member.pid, sframe), unit)
            except BlockingIOError:
                pass
        seq += 1
        deadline += period
        await trio.sleep_until(deadline)  # the frame clock


async def audio_crowd(participants: int, seconds: float, last_n: int = 0) -> dict[str, Any]:
    """``participants`` each sending 160 B at 50 fps, everyone receiving, for ``seconds``.

    Loss is over every (receiver, sender) pair that should carry frames: every pair, or with
    ``last_n`` the pairs from the ``last_n`` loudest senders (levels are fixed: participant
    ``i`` sends at level ``i``, so 1 .. last_n are the loudest); expected is everything those
    senders sent after their first half second, received once the datagrams stop arriving.
    """
    with tempfile.TemporaryDirectory() as folder:
        unit = UnitProcess(Path(folder), last_n)
        crowd = [_Light(g) for g in _grants(unit, participants)]
        sent: dict[int, list[float]] = {m.pid: [] for m in crowd}
        arrivals = _Arrivals()
        try:
            await _join_all(crowd, unit.address)
            cpu_unit, cpu_here = unit.cpu_seconds(), time.process_time()
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for member in crowd:
                    nursery.start_soon(_receive, member, sent, arrivals)
                await _send(crowd, unit.address, seconds, sent)
                await _quiet(arrivals)
                nursery.cancel_scope.cancel()
            elapsed = trio.current_time() - started
            cpu_unit, cpu_here = unit.cpu_seconds() - cpu_unit, time.process_time() - cpu_here
        finally:
            stats = unit.stop()
            for member in crowd:
                member.sock.close()
    counted = set(range(1, last_n + 1)) if last_n else set(sent)
    streams = [s for m in crowd for sender, s in m.streams.items() if sender in counted]
    expected = sum(len(sent[s]) - WARMUP_FRAMES for s in counted) * (participants - 1)
    received = sum(s.unique for s in streams)
    pooled = _pooled(streams)
    return {"participants": participants, "last_n": last_n, "seconds": seconds,
            "sent": sum(len(v) for v in sent.values()), "expected": expected,
            **pooled, "received": received,
            "loss": 1 - received / expected if expected else None,
            "unit_in_per_second": stats.get("media", 0) / seconds,
            "unit_out_per_second": stats.get("forwarded", 0) / seconds,
            "unit": stats, "unit_cpu": cpu_unit / elapsed, "clients_cpu": cpu_here / elapsed,
            "drain_seconds": elapsed - seconds}


def call_figures(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    """Every call figure of the run (the SFrame cases are timed with the hot path)."""
    load = os.getloadavg()[0]  # how busy the shared machine was before these runs
    video_seconds, crowd_seconds = (3.0, 2.0) if quick else (10.0, 5.0)
    sweep = (10, 30, 50) if quick else (10, 20, 30, 40, 50)
    video = trio.run(video_call, video_seconds, VIDEO_PARTICIPANTS, progress)
    crowd = []
    for count in sweep:
        if progress:
            progress(f"calls: {count} audio senders, everyone receiving, {crowd_seconds:g} s")
        crowd.append(trio.run(audio_crowd, count, crowd_seconds))
    if progress:
        progress(f"calls: 50 audio senders, last-N = {LAST_N}")
    last_n = trio.run(audio_crowd, 50, crowd_seconds, LAST_N)
    return {"video": video, "crowd": crowd, "last_n": last_n,
            "load_average": load}

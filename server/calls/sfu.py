"""The forwarding unit (SFU): admits call participants by join token and forwards each one's
media datagrams to the others, over UDP (docs/PROTOCOL.md §18.4, §18.6).

Invariants:

* It holds no media key and reads nothing inside a frame: it forwards SFrame ciphertext as it
  came (the sender's MEDIA datagram, its tag cut off), one byte string for every receiver.
* A datagram counts only once its participant is known by its source address, its counter is
  fresh and its tag verifies under that participant's packet key; a JOIN only with a token
  that verifies under the call key shared with the signalling server. Anything else is counted
  in :class:`SfuStats` and dropped; nothing a datagram says can raise out of :meth:`Sfu.handle`
  (and should a bug let something, :meth:`Sfu.serve` counts it in ``errors``, logs it and goes
  on: the unit may run inside a relay or social server, which it must not end).
* Each receiver has its own bounded queue and send budget: a receiver that asked for a lower
  rate (``max_kbps`` in its JOIN) or whose datagrams the socket cannot take at once waits in
  its own queue, and past ``queue_packets`` it loses its own frames (counted), never another
  receiver's.
* A participant not heard from for ``participant_timeout`` seconds is removed and the others
  are told (an EVENT datagram), as for one that sent LEAVE.

The protocol work (:meth:`Sfu.handle`, :meth:`Sfu.tick`, :meth:`Sfu.pace`) takes the time as an
argument and sends with non-blocking ``sendto``; :meth:`Sfu.serve` is the trio loop around it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import trio

from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_packets import PacketKey, ReplayWindow
from e2e_proto.call_tokens import JoinToken, check_call_key, packet_key, verify_token
from e2e_proto.constants import MAX_CALL_DATAGRAM, MAX_CALL_PARTICIPANTS
from e2e_proto.errors import (
    CallTokenError,
    ExpiredCallTokenError,
    MalformedError,
    PacketAuthenticationError,
)

log = logging.getLogger("e2e.sfu")

SOCKET_BUFFER = 4 * 1024 * 1024
"""Bytes asked for the socket's receive and send buffers."""
RECEIVE_BATCH = 256
"""Datagrams read per wake-up before letting other tasks run."""
SILENT_LEVEL = 127


@dataclass(frozen=True, slots=True)
class SfuConfig:
    """The forwarding unit's limits and timings (seconds, datagrams, participants)."""

    participant_timeout: float = 5.0
    """Seconds without a datagram after which a participant is removed."""
    queue_packets: int = 64
    """Datagrams waiting per receiver; more are dropped (counted for that receiver)."""
    last_n: int = 0
    """Forward media of the ``last_n`` loudest senders of a call only (0: of every sender)."""
    max_calls: int = 10_000
    max_participants: int = MAX_CALL_PARTICIPANTS
    """Participants of one call, whatever its tokens allow."""
    tick_interval: float = 0.2
    """Seconds between timeout checks and loudest-sender selections."""
    pace_interval: float = 0.002
    """Seconds between rounds of draining the receivers' queues."""
    burst_seconds: float = 0.1
    """A rate-limited receiver's budget holds this many seconds of its rate (at least 16 KiB)."""
    rejects_per_second: float = 200.0
    """REJECT answers to unknown addresses, over all of them."""
    spent_tokens: int = 100_000
    """Used-up tokens remembered (until they expire) so that their JOINs are not admitted
    again; past this many the oldest is forgotten first."""


@dataclass(slots=True)
class SfuStats:
    """What the unit did with the datagrams it got (counts since start)."""

    datagrams: int = 0
    bytes: int = 0
    joins: int = 0
    rejoins: int = 0
    leaves: int = 0
    timeouts: int = 0
    media: int = 0
    forwarded: int = 0
    forwarded_bytes: int = 0
    dropped: int = 0
    """Datagrams a receiver's full queue refused."""
    not_selected: int = 0
    """Datagrams not forwarded to a receiver because their sender was not among the loudest."""
    oversized: int = 0
    malformed: int = 0
    unknown_address: int = 0
    bad_tag: int = 0
    replayed: int = 0
    bad_token: int = 0
    expired_token: int = 0
    call_full: int = 0
    send_errors: int = 0
    rejects: int = 0
    errors: int = 0
    """Datagrams whose handling raised (a bug): logged and dropped, the unit goes on."""

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return asdict(self)


@dataclass(eq=False, slots=True)
class Participant:
    """One admitted participant: who it is, where it is, its keys and its receive queue."""

    room: Room
    pid: int
    address: Address
    peer: tuple[str, int]
    key: PacketKey
    token_nonce: bytes
    token_expires: int
    last_heard: float
    rate: float
    """Bytes per second this receiver asked for (0: no limit)."""
    budget: float
    refilled: float
    replay: ReplayWindow = field(default_factory=ReplayWindow)
    counter: int = 0
    """The counter of the next sealed datagram sent to it."""
    level: float = SILENT_LEVEL
    """Its smoothed audio level (lower is louder)."""
    queue: deque[bytes] = field(default_factory=deque)
    forwarded: int = 0
    dropped: int = 0

    def next_counter(self) -> int:
        """A fresh counter for a datagram to this participant."""
        self.counter += 1
        return self.counter


@dataclass(eq=False, slots=True)
class Room:
    """One call as the unit sees it: its participants by id and the senders forwarded."""

    call_id: bytes
    limit: int
    participants: dict[int, Participant] = field(default_factory=dict)
    selected: frozenset[int] | None = None
    """The loudest senders (last-N), or None to forward every sender."""


class Sfu:
    """A forwarding unit over one UDP socket, admitting with tokens made under ``call_key``.

    ``clock`` (seconds, monotonic) drives timeouts and rates; ``wall_ms`` (Unix milliseconds)
    checks token expiry against the signalling server's clock.
    """

    def __init__(self, call_key: bytes, config: SfuConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        check_call_key(call_key)
        self.call_key = call_key
        self.config = config or SfuConfig()
        self.clock = clock
        self.wall_ms = wall_ms
        self.stats = SfuStats()
        self.rooms: dict[bytes, Room] = {}
        self.spent: dict[bytes, int] = {}
        """Nonce -> expiry (Unix ms) of each token whose participant was removed or took a
        newer token, in that order: a JOIN with one is a replay. Forgotten, oldest first, once
        expired (its JOIN is refused as expired from then on); at most ``config.spent_tokens``
        are held, and past that the oldest goes first."""
        self._by_peer: dict[tuple[str, int], Participant] = {}
        self._waiting: set[Participant] = set()
        self._wake_pacer = trio.Event()
        self._reject_budget = self.config.rejects_per_second
        self._reject_stamp = clock()
        self._sock: socket.socket | None = None
        self.routes: dict[int, Callable[[Participant, bytes, float], None]] = {
            packets.MEDIA: self._forward,
            packets.KEEPALIVE: self._acknowledge,
            packets.LEAVE: self._leave,
        }
        """What an admitted participant may send: datagram type -> handler. (JOIN, which is
        what admits, is taken before any of these.)"""

    # -- socket ------------------------------------------------------------------------------

    def bind(self, host: str, port: int) -> tuple[str, int]:
        """Open the UDP socket on ``host:port`` (port 0: any); the address it is bound to."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the socket is bound to."""
        assert self._sock is not None, "bind() first"
        host, port = self._sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()

    async def serve(self, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Receive, forward, pace and time out until cancelled; reports the address when ready.

        The socket is closed when serving ends.
        """
        assert self._sock is not None, "bind() first"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._pace_loop)
                nursery.start_soon(self._tick_loop)
                task_status.started(self.address)
        finally:
            self.close()

    async def _receive_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        size = MAX_CALL_DATAGRAM + 1  # one more, to tell an oversized datagram
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = self.clock()
            for _ in range(RECEIVE_BATCH):
                try:
                    data, peer = sock.recvfrom(size)
                except BlockingIOError:
                    break
                except OSError:  # an ICMP error for an earlier send: nothing to read
                    continue
                try:
                    self.handle(data, peer[:2], now)
                except Exception:  # a bug must not end the server the unit runs inside
                    self.stats.errors += 1
                    log.exception("a datagram from %s made the unit fail; dropped", peer[:2])
            else:
                await trio.lowlevel.checkpoint()

    async def _pace_loop(self) -> None:
        while True:
            await self._wake_pacer.wait()
            self._wake_pacer = trio.Event()
            while self._waiting:
                if self.pace(self.clock()):
                    await trio.sleep(self.config.pace_interval)  # budgets refill with time
                else:
                    assert self._sock is not None
                    await trio.lowlevel.wait_writable(self._sock)

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(self.config.tick_interval)  # timeouts and last-N are periodic
            self.tick(self.clock())

    def _send(self, data: bytes, peer: tuple[str, int]) -> bool:
        """Send one datagram now; False when the socket cannot take it (try again later)."""
        assert self._sock is not None
        try:
            self._sock.sendto(data, peer)
        except BlockingIOError:
            return False
        except OSError:
            self.stats.send_errors += 1
        return True

    # -- datagrams ---------------------------------------------------------------------------

    def handle(self, data: bytes, peer: tuple[str, int], now: float) -> None:
        """Act on one datagram from ``peer``; counts and drops anything unacceptable."""
        stats = self.stats
        stats.datagrams += 1
        stats.bytes += len(data)
        if len(data) > MAX_CALL_DATAGRAM:
            stats.oversized += 1
            return
        try:
            kind, pid, counter = packets.sealed_head(data)
        except MalformedError:
            stats.malformed += 1
            return
        if kind == packets.JOIN:
            self._join(data, peer, pid, counter, now)
            return
        participant = self._by_peer.get(peer)
        if participant is None or participant.pid != pid:
            stats.unknown_address += 1
            self._reject(peer, pid, packets.REJECT_NOT_ADMITTED, now)
            return
        if not participant.replay.fresh(counter):
            stats.replayed += 1
            return
        try:
            participant.key.verify(data)
        except PacketAuthenticationError:
            stats.bad_tag += 1
            return
        participant.replay.mark(counter)
        participant.last_heard = now
        route = self.routes.get(kind)
        if route is None:
            stats.malformed += 1
        else:
            route(participant, data, now)

    def _acknowledge(self, participant: Participant, data: bytes, now: float) -> None:
        """KEEPALIVE: answer, so the participant knows the unit still has it."""
        self._send(packets.control_packet(participant.key, packets.KEEPALIVE_ACK,
                                          participant.pid, participant.next_counter()),
                   participant.peer)

    def _leave(self, participant: Participant, data: bytes, now: float) -> None:
        """LEAVE: out at once; the others are told."""
        self.stats.leaves += 1
        self._remove(participant, packets.LEFT)

    def _token(self, data: bytes, peer: tuple[str, int], pid: int,
               now: float) -> tuple[JoinToken, int] | None:
        """The verified token of a JOIN and the receive rate it asks for; None (counted)."""
        try:
            max_kbps, token = packets.join_body(data)
            checked = verify_token(self.call_key, token, self.wall_ms())
        except ExpiredCallTokenError:
            self.stats.expired_token += 1
            self._reject(peer, pid, packets.REJECT_TOKEN, now)
            return None
        except (CallTokenError, MalformedError):
            self.stats.bad_token += 1
            return None
        if checked.participant != pid:
            self.stats.bad_token += 1
            return None
        return checked, max_kbps

    def _join(self, data: bytes, peer: tuple[str, int], pid: int, counter: int,
              now: float) -> None:
        found = self._token(data, peer, pid, now)
        if found is None:
            return
        token, max_kbps = found
        key = PacketKey(packet_key(self.call_key, token.body))
        try:
            key.verify(data)  # the holder of the token has its packet key: not a copied token
        except PacketAuthenticationError:
            self.stats.bad_tag += 1
            return
        if token.nonce in self.spent:  # its participant went, or has a newer token
            self.stats.replayed += 1
            return
        room = self.rooms.get(token.call_id)
        existing = None if room is None else room.participants.get(pid)
        if existing is not None:
            self._rejoin(existing, token, key, peer, counter, max_kbps, now)
            return
        if room is None:
            if len(self.rooms) >= self.config.max_calls:
                self.stats.call_full += 1
                self._reject(peer, pid, packets.REJECT_FULL, now)
                return
            room = Room(token.call_id, min(token.limit, self.config.max_participants))
        if len(room.participants) >= min(room.limit, token.limit):
            self.stats.call_full += 1
            self._reject(peer, pid, packets.REJECT_FULL, now)
            return
        self.rooms[token.call_id] = room
        old = self._by_peer.get(peer)
        if old is not None:  # the address joins anew: what it was before has gone
            self._remove(old, packets.LEFT)
        participant = Participant(room, pid, token.address, peer, key, token.nonce,
                                  token.expires_ms, now, 0.0, 0.0, now)
        self._set_rate(participant, max_kbps, now)
        participant.replay.mark(counter)
        others = list(room.participants)
        room.participants[pid] = participant
        self._by_peer[peer] = participant
        self.stats.joins += 1
        log.info("participant %d (%s) joined a call (%d in it)", pid, token.address,
                 len(room.participants))
        self._send(packets.welcome_packet(key, pid, participant.next_counter(), others), peer)
        self._tell_others(participant, packets.JOINED)

    def _rejoin(self, participant: Participant, token: JoinToken, key: PacketKey,
                peer: tuple[str, int], counter: int, max_kbps: int, now: float) -> None:
        """A JOIN for an admitted participant: a new address, or a newer token."""
        if token.nonce == participant.token_nonce:
            if not participant.replay.fresh(counter):
                self.stats.replayed += 1
                return
        elif token.expires_ms < participant.token_expires:
            self.stats.replayed += 1  # an older token than the one admitted: a replay
            return
        else:
            self._use_up(participant)
            participant.key = key
            participant.token_nonce = token.nonce
            participant.token_expires = token.expires_ms
            participant.replay = ReplayWindow()
        participant.replay.mark(counter)
        if participant.peer != peer:
            if self._by_peer.get(participant.peer) is participant:
                del self._by_peer[participant.peer]
            old = self._by_peer.get(peer)
            if old is not None:
                self._remove(old, packets.LEFT)
            participant.peer = peer
            self._by_peer[peer] = participant
        participant.last_heard = now
        self._set_rate(participant, max_kbps, now)
        self.stats.rejoins += 1
        others = [p for p in participant.room.participants if p != participant.pid]
        self._send(packets.welcome_packet(participant.key, participant.pid,
                                          participant.next_counter(), others), peer)

    def _use_up(self, participant: Participant) -> None:
        """Remember the participant's token as used up: its JOIN admits nobody again."""
        spent = self.spent
        while spent and len(spent) >= self.config.spent_tokens:
            del spent[next(iter(spent))]
        spent[participant.token_nonce] = participant.token_expires

    def _set_rate(self, participant: Participant, max_kbps: int, now: float) -> None:
        participant.rate = max_kbps * 125.0  # kbit/s to bytes/s
        participant.budget = self._burst(participant)
        participant.refilled = now

    def _burst(self, participant: Participant) -> float:
        return max(participant.rate * self.config.burst_seconds, 16 * 1024.0)

    def _reject(self, peer: tuple[str, int], pid: int, reason: int, now: float) -> None:
        """Answer with a REJECT, within the global REJECT rate (it is unauthenticated)."""
        rate = self.config.rejects_per_second
        elapsed = max(0.0, now - self._reject_stamp)
        self._reject_budget = min(rate, self._reject_budget + elapsed * rate)
        self._reject_stamp = now
        if self._reject_budget >= 1:
            self._reject_budget -= 1
            self.stats.rejects += 1
            self._send(packets.reject_packet(pid, reason), peer)

    # -- forwarding --------------------------------------------------------------------------

    def _forward(self, sender: Participant, data: bytes, now: float) -> None:
        """MEDIA: to every other participant (its loudest senders only, with last-N)."""
        try:
            _, level = packets.media_head(data)
        except MalformedError:
            self.stats.malformed += 1
            return
        self.stats.media += 1
        sender.level += (min(level, SILENT_LEVEL) - sender.level) * 0.1
        room = sender.room
        receivers = len(room.participants) - 1
        if room.selected is not None and sender.pid not in room.selected:
            self.stats.not_selected += receivers
            return
        datagram = packets.forward_of(data)
        size = len(datagram)
        for receiver in room.participants.values():
            if receiver is not sender:
                self._deliver(receiver, datagram, size, now)

    def _deliver(self, receiver: Participant, datagram: bytes, size: int, now: float) -> None:
        """Send to one receiver now if its queue is empty and its budget allows; else queue it
        (or drop it, counted, when its queue is full)."""
        if not receiver.queue and self._spend(receiver, size, now):
            if self._send(datagram, receiver.peer):
                receiver.forwarded += 1
                self.stats.forwarded += 1
                self.stats.forwarded_bytes += size
                return
            if receiver.rate:
                receiver.budget += size  # spent but not sent: give it back
        if len(receiver.queue) >= self.config.queue_packets:
            receiver.dropped += 1
            self.stats.dropped += 1
            return
        receiver.queue.append(datagram)
        self._waiting.add(receiver)
        self._wake_pacer.set()

    def _spend(self, receiver: Participant, size: int, now: float) -> bool:
        """Take ``size`` bytes from a rate-limited receiver's budget; False if it lacks them."""
        if not receiver.rate:
            return True
        receiver.budget = min(self._burst(receiver),
                              receiver.budget + (now - receiver.refilled) * receiver.rate)
        receiver.refilled = now
        if receiver.budget < size:
            return False
        receiver.budget -= size
        return True

    def pace(self, now: float) -> bool:
        """Send what the waiting receivers' budgets allow; False when the socket is full.

        A receiver leaves the waiting set once its queue is empty.
        """
        for receiver in list(self._waiting):
            queue = receiver.queue
            while queue:
                size = len(queue[0])
                if not self._spend(receiver, size, now):
                    break
                if not self._send(queue[0], receiver.peer):
                    if receiver.rate:
                        receiver.budget += size
                    return False
                queue.popleft()
                receiver.forwarded += 1
                self.stats.forwarded += 1
                self.stats.forwarded_bytes += size
            if not queue:
                self._waiting.discard(receiver)
        return True

    # -- membership --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Remove participants silent for too long; choose each call's loudest senders; forget
        used-up tokens that have expired."""
        timeout = self.config.participant_timeout
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                if now - participant.last_heard > timeout:
                    self.stats.timeouts += 1
                    log.info("participant %d (%s) timed out", participant.pid,
                             participant.address)
                    self._remove(participant, packets.TIMED_OUT)
        last_n = self.config.last_n
        for room in self.rooms.values():
            if last_n and len(room.participants) > last_n:
                loudest = sorted(room.participants.values(), key=lambda p: (p.level, p.pid))
                room.selected = frozenset(p.pid for p in loudest[:last_n])
            else:
                room.selected = None
        now_ms, spent = self.wall_ms(), self.spent
        while spent and spent[first := next(iter(spent))] <= now_ms:  # oldest first
            del spent[first]

    def _remove(self, participant: Participant, event: int) -> None:
        room = participant.room
        if room.participants.get(participant.pid) is not participant:
            return
        del room.participants[participant.pid]
        self._use_up(participant)
        if self._by_peer.get(participant.peer) is participant:
            del self._by_peer[participant.peer]
        participant.queue.clear()
        self._waiting.discard(participant)
        self._tell_others(participant, event)
        if not room.participants:
            del self.rooms[room.call_id]

    def _tell_others(self, subject: Participant, event: int) -> None:
        for other in subject.room.participants.values():
            if other is not subject:
                self._send(packets.event_packet(other.key, other.pid, other.next_counter(),
                                                event, subject.pid), other.peer)

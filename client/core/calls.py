"""A call as one device takes part in it, on either transport: who is in it, the media keys,
the synthetic media stream and what arrived of everyone else's (docs/PROTOCOL.md §18.5-18.7).

The transport's session (:mod:`client.private.calls`, :mod:`client.social.calls`) makes the
:class:`Grant` from its server's join answer, hands :class:`ActiveCall` the notices that
concern it (someone joined or left, a key arrived) and carries what it sends (keys, a new
join); everything else is here.

Invariants:

* End to end: this device's media key goes only to devices the transport allows (members of
  the conversation by this device's own records) that the server says are in the call, over
  pairwise sessions. When someone joins, the key steps forward (the newcomer cannot open
  earlier frames); when someone leaves, a fresh key of the next generation goes to those who
  stay. A key is taken only from the device the server says holds that participant id.
* Server-keyed (social, not end to end): the keys are the server's, and the call says so.
* Every field of the server's answers and notices is checked before use, with bounds.
* The unit's untagged datagrams steer nothing beyond their bounds: a FORWARD counts only for a
  sender in the call, a REJECT only for this participant (and rejoins come at most once per
  ``JOIN_WAIT``); frames waiting for keys and notices are bounded too.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import trio

from e2e_proto import call_api
from e2e_proto import call_packets as packets
from e2e_proto.address import Address, is_valid_account, is_valid_device_id
from e2e_proto.call_keys import CallKey, CallKeys
from e2e_proto.call_media import MediaProfile, StreamStats, make_frame, read_frame
from e2e_proto.call_tokens import MAX_TOKEN_SIZE, MIN_TOKEN_SIZE
from e2e_proto.constants import (
    CALL_ID_SIZE,
    CALL_KEY_SIZE,
    MAX_CALL_PARTICIPANT_ID,
    MAX_CALL_PARTICIPANTS,
)
from e2e_proto.errors import (
    DecryptionError,
    E2EProtoError,
    MalformedError,
    UnknownKeyIdError,
)
from e2e_proto.primitives import RandomSource, system_random

from .call_link import MediaLink
from .connection import Connection, ConnectionLost, ServerError
from .errors import ClientError
from .pushes import bounded_int

log = logging.getLogger("e2e.client")
JOIN_ATTEMPTS = 5
JOIN_WAIT = 1.0
"""Seconds to wait for the unit's WELCOME before sending JOIN again."""
KEEPALIVE_INTERVAL = 1.0
UNIT_SILENCE = 3.0
"""Seconds without a datagram from the unit after which this device joins it again."""
PENDING_FRAMES = 64
"""Frames kept per sender while its key has not arrived (RFC 9605 §5: a receiver may wait)."""
PENDING_BYTES = 4 * 1024 * 1024
"""Bytes of frames kept waiting for keys, over all senders."""
MAX_NOTICES = 100
"""Notices a call keeps for its report (the latest; the others are only counted)."""
DEFAULT_LEVEL = 40
"""The synthetic audio level sent (0 loudest, 127 silence)."""


def _host_port(value: object) -> tuple[str, int] | None:
    if type(value) is not str or len(value) > 300:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def roster(value: object, limit: int) -> dict[int, Address]:
    """``[[pid, account, device], ...]`` from a server, checked; :class:`ClientError`."""
    if type(value) is not list or len(value) > limit:
        raise ClientError("the server sent a malformed participant list")
    found: dict[int, Address] = {}
    for entry in value:
        if type(entry) is not list or len(entry) != 3:
            raise ClientError("the server sent a malformed participant list")
        found[participant_id(entry[0])] = device_address(entry[1], entry[2])
    return found


def participant_id(value: object) -> int:
    """A participant id from a server, checked; :class:`ClientError`."""
    checked = bounded_int(value, 1, MAX_CALL_PARTICIPANT_ID)
    if checked is None:
        raise ClientError("the server sent a malformed participant id")
    return checked


def device_address(account: object, device: object) -> Address:
    """A device from a server, checked; :class:`ClientError`."""
    if not is_valid_account(account) or not is_valid_device_id(device):
        raise ClientError("the server sent a malformed device")
    return Address(account, device)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Grant:
    """A server's answer to a join: where the unit is, the token, and who is in the call."""

    call_id: bytes
    participant: int
    sfu: tuple[str, int]
    token: bytes
    packet_key: bytes
    limit: int
    e2e: bool
    participants: dict[int, Address]
    keys: tuple[CallKey, ...] = ()
    """The server's keys for everyone (server-keyed calls only)."""


def parse_grant(answer: dict[str, Any], cap: int, *, end_to_end: bool = False) -> Grant:
    """The :class:`Grant` in a join answer, every field checked; ``cap`` is the transport's
    participant cap (a call claiming more is refused). :class:`ClientError` when malformed, and
    when ``end_to_end`` (the private transport) and the server offers a call it keys itself."""
    call_id, token, key = answer.get("call_id"), answer.get("token"), answer.get("packet_key")
    sfu = _host_port(answer.get("sfu"))
    limit = bounded_int(answer.get("limit"), 1, MAX_CALL_PARTICIPANTS)
    e2e = answer.get("e2e")
    if (type(call_id) is not bytes or len(call_id) != CALL_ID_SIZE or sfu is None
            or type(token) is not bytes or not MIN_TOKEN_SIZE <= len(token) <= MAX_TOKEN_SIZE
            or type(key) is not bytes or len(key) != CALL_KEY_SIZE or limit is None
            or type(e2e) is not bool):
        raise ClientError("the server's answer to the join is malformed")
    if limit > cap:
        raise ClientError(f"the server allows {limit} participants; this transport has at "
                          f"most {cap}")
    if end_to_end and not e2e:
        raise ClientError("the server offered a call without end-to-end encryption; refused "
                          "(calls on this transport are always end to end)")
    participants = roster(answer.get("participants"), cap)
    keys: tuple[CallKey, ...] = ()
    if not e2e:
        raw = answer.get("keys")
        if type(raw) is not list or len(raw) > cap:
            raise ClientError("the server's call keys are malformed")
        try:
            keys = tuple(CallKey.from_wire(call_id, k) for k in raw)
        except MalformedError:
            raise ClientError("the server's call keys are malformed") from None
    return Grant(call_id, participant_id(answer.get("participant")), sfu, token, key, limit,
                 e2e, participants, keys)


class CallRequests:
    """The call requests a session makes the same way on both transports (leaving, ending) and
    its server's refusals as one-line errors; a session class names its transport, its server
    and the transport's participant cap."""

    connection: Connection
    call_transport: ClassVar[str]
    call_server: ClassVar[str]
    call_cap: ClassVar[int]

    async def call_leave(self, call_id: bytes) -> None:
        """Leave the call."""
        await self._call_request(call_api.CALL_LEAVE, call_id=call_id)

    async def call_end(self, call_id: bytes) -> None:
        """End the call for everybody (the caller; either side of a one-to-one call)."""
        await self._call_request(call_api.CALL_END, call_id=call_id)

    async def _call_request(self, kind: str, **fields: Any) -> dict[str, Any]:
        try:
            return await self.connection.request(kind, **fields)
        except ServerError as exc:
            if exc.code == call_api.CALL_FULL:
                raise ClientError(f"the call is full: a call on the {self.call_transport} "
                                  f"transport has at most {self.call_cap} participants") from None
            raise ClientError(f"{self.call_server} refused the call request: {exc} "
                              f"({exc.code})") from None


class CallTransport(Protocol):
    """What a call needs from its transport's session."""

    async def call_rejoin(self, call_id: bytes) -> Grant:
        """Join the call again (a new token, the unit restarted)."""
        ...

    async def call_send_key(self, key: CallKey, targets: list[Address]) -> None:
        """Send ``key`` to ``targets`` over pairwise sessions (end-to-end calls)."""
        ...

    async def call_leave(self, call_id: bytes) -> None:
        """Leave the call at the server."""
        ...


@dataclass(frozen=True, slots=True)
class ParticipantReport:
    """What arrived from one other participant."""

    participant: int
    address: Address | None
    received: int
    lost: int
    failed: int
    no_key: int
    duplicates: int
    reordered: int
    p50_ms: float | None
    p99_ms: float | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"participant": self.participant,
                "account": None if self.address is None else self.address.account,
                "device": None if self.address is None else self.address.device_id,
                "received": self.received, "lost": self.lost, "failed": self.failed,
                "no_key": self.no_key, "duplicates": self.duplicates,
                "reordered": self.reordered, "latency_p50_ms": self.p50_ms,
                "latency_p99_ms": self.p99_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParticipantReport:
        """Inverse of :meth:`as_json`."""
        account = data["account"]
        return cls(data["participant"], None if account is None else Address(
            account, data["device"]), data["received"], data["lost"], data["failed"],
            data["no_key"], data["duplicates"], data["reordered"], data["latency_p50_ms"],
            data["latency_p99_ms"])


@dataclass
class CallReport:
    """A call's outcome for this device."""

    call_id: bytes
    participant: int
    e2e: bool
    seconds: float
    sent: int
    participants: list[ParticipantReport]
    rejoins: int
    notices: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"call_id": self.call_id.hex(), "participant": self.participant,
                "end_to_end": self.e2e, "seconds": round(self.seconds, 3), "sent": self.sent,
                "rejoins": self.rejoins, "participants": [p.as_json() for p in self.participants],
                "notices": self.notices}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallReport:
        """Inverse of :meth:`as_json` (the seconds as rounded there)."""
        return cls(bytes.fromhex(data["call_id"]), data["participant"], data["end_to_end"],
                   data["seconds"], data["sent"],
                   [ParticipantReport.from_json(p) for p in data["participants"]],
                   data["rejoins"], list(data["notices"]))


Watcher = Callable[[str, int, Address | None], None]
"""Told who came and went: ``("joined", pid, address)``, or ``(why, pid, address)`` when
``pid`` left, ``why`` being ``hung up`` or ``is gone`` (the server says) or ``left`` or
``timed out`` (the unit says)."""


class ActiveCall:
    """This device in one call: membership, keys, the media link and the received streams.

    ``allowed(address)`` says whether a device may get this device's key (end-to-end calls:
    a member of the call's conversation by this device's own records). ``wall_clock`` stamps
    and times frames (seconds since the epoch). ``watch``, if given, is told who joins and
    leaves (:data:`Watcher`).
    """

    def __init__(self, transport: CallTransport, grant: Grant, profile: MediaProfile, *,
                 allowed: Callable[[Address], bool], random: RandomSource = system_random,
                 wall_clock: Callable[[], float] = time.time, level: int = DEFAULT_LEVEL,
                 max_kbps: int = 0, watch: Watcher | None = None) -> None:
        self.transport = transport
        self.grant = grant
        self.call_id = grant.call_id
        self.e2e = grant.e2e
        self.profile = profile
        self.allowed = allowed
        self.random = random
        self.wall_clock = wall_clock
        self.level = level
        self.max_kbps = max_kbps
        self.watch = watch
        self.keys = CallKeys.fresh(grant.call_id, grant.participant, random)
        self.members: dict[int, Address] = dict(grant.participants)
        self.present = {p for p in grant.participants if p != grant.participant}
        self.streams: dict[int, StreamStats] = {}
        self.notices: deque[str] = deque(maxlen=MAX_NOTICES)
        """The latest notices (someone joined or left, a key refused, ...), for the report."""
        self.notices_dropped = 0
        self.sent = 0
        self.rejoins = 0
        self.ignored = 0
        """FORWARDs from a sender not in the call and REJECTs for another participant (both
        are untagged: anyone who can send from the unit's address can make them), and joins
        announced beyond the call's limit."""
        self.ended = trio.Event()
        """Set when the server ends the call; :meth:`run` then returns."""
        self.left = False
        """Whether this device left the call (its time ran out, or :meth:`stop`) before the
        call ended."""
        self.streaming = trio.Event()
        """Set once the first frame is sent (this device is in the unit and keyed)."""
        self._pending: dict[int, deque[bytes]] = {}
        self._pending_bytes = 0
        self._welcomed = trio.Event()
        self._rejoin_wanted = trio.Event()
        self._heard = 0.0
        self._link: MediaLink | None = None
        self._nursery: trio.Nursery | None = None
        self._stay = trio.CancelScope()
        if not grant.e2e:
            self.take_server_keys(grant.keys)

    # -- notices from the transport ---------------------------------------------------------

    async def on_joined(self, pid: int, address: Address) -> None:
        """The server says ``address`` joined as ``pid``: step the key, give it the key."""
        if pid == self.grant.participant or pid in self.present:
            return
        if len(self.present) + 1 >= self.grant.limit:
            self.ignored += 1
            self.notice(f"ignored {address} joining: the call already has its "
                        f"{self.grant.limit} participants")
            return
        self._remember(pid, address)
        self.present.add(pid)
        self.notice(f"{address} joined")
        if self.watch is not None:
            self.watch("joined", pid, address)
        if self.e2e:
            await self._send_key(self.keys.ratchet(), [pid])

    def _remember(self, pid: int, address: Address) -> None:
        """Keep ``address`` as ``pid``'s, within :data:`MAX_CALL_PARTICIPANTS` entries: the
        oldest participant who has gone makes room (its name only labels the report)."""
        if pid not in self.members and len(self.members) >= MAX_CALL_PARTICIPANTS:
            gone = next((p for p in self.members
                         if p not in self.present and p != self.grant.participant), None)
            if gone is not None:
                del self.members[gone]
        self.members[pid] = address

    async def on_left(self, pid: int, why: str = "left") -> None:
        """``pid`` left (or timed out): forget its key; a new key for those who stay."""
        if pid not in self.present:
            return
        self.present.discard(pid)
        self.keys.forget(pid)
        address = self.members.get(pid)
        self.notice(f"{address or pid} {why}")
        if self.watch is not None:
            self.watch(why, pid, address)
        if self.e2e:
            await self._send_key(self.keys.renew(self.random), sorted(self.present))

    def on_key(self, sender: Address, key: CallKey) -> None:
        """A key that ``sender`` sent over a pairwise session (end-to-end calls).

        Taken only when the server says ``sender`` holds that participant id and the
        transport allows it; refused keys become notices.
        """
        if (not self.e2e or key.call_id != self.call_id or key.participant == self.keys.participant
                or self.members.get(key.participant) != sender or not self.allowed(sender)):
            self.notice(f"refused a call key from {sender}")
            return
        self.keys.add(key)
        self._retry(key.participant)

    def take_server_keys(self, keys: tuple[CallKey, ...] | list[CallKey]) -> None:
        """The server's keys (server-keyed calls): this device's own and everyone else's.

        An end-to-end call takes none (a notice says so): its keys come only from the other
        participants' devices, over pairwise sessions.
        """
        if self.e2e:
            self.notice("refused call keys from the server: the call is end to end")
            return
        for key in keys:
            if key.participant == self.keys.participant:
                self.keys.set_own(key.kid, key.base_key)
            elif key.participant in self.members:
                self.keys.add(key)
                self._retry(key.participant)

    def notice(self, text: str) -> None:
        """Keep ``text`` for the report; past ``MAX_NOTICES`` the oldest goes (counted)."""
        if len(self.notices) == MAX_NOTICES:
            self.notices_dropped += 1
        self.notices.append(text)

    async def _send_key(self, key: CallKey, pids: list[int]) -> None:
        targets = [self.members[p] for p in pids if p in self.members
                   and self.allowed(self.members[p])]
        if targets:
            try:
                await self.transport.call_send_key(key, targets)
            except ClientError as exc:
                self.notice(f"could not send the call key: {exc}")

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop streaming and leave now, as when the seconds run out (:meth:`run` returns)."""
        self._stay.cancel()

    async def run(self, seconds: float) -> CallReport:
        """Join the unit, stream for ``seconds`` (or until the call ends or :meth:`stop`),
        leave; the report. A failure to leave at the server is one of its notices."""
        peer = await _resolve(self.grant.sfu)
        self._link = MediaLink(peer, self.grant.participant, self.grant.packet_key,
                               self.max_kbps)
        started = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._link.receive, self._on_datagram)
                await self._join_unit(self.grant.token)
                if self.e2e:
                    await self._send_key(self.keys.own_key, sorted(self.present))
                nursery.start_soon(self._keep_alive)
                self._stay.deadline = trio.current_time() + seconds
                with self._stay:
                    async with trio.open_nursery() as streaming:
                        streaming.start_soon(self._stream)
                        await self.ended.wait()
                        streaming.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
            self._link.send_control(packets.LEAVE)
        finally:
            self._link.close()
        if not self.ended.is_set():
            self.left = True
            try:
                await self.transport.call_leave(self.call_id)
            except (ClientError, ConnectionLost) as exc:  # ended meanwhile, or the line broke
                self.notice(f"could not leave the call at the server: {exc}")
        return self.report(trio.current_time() - started)

    async def _join_unit(self, token: bytes) -> None:
        assert self._link is not None
        self._welcomed = trio.Event()
        for _ in range(JOIN_ATTEMPTS):
            self._link.send_join(token)
            with trio.move_on_after(JOIN_WAIT):
                await self._welcomed.wait()
                return
        host, port = self._link.peer
        raise ClientError(f"the forwarding unit at {host}:{port} does not answer")

    async def _rejoin(self) -> None:
        """Ask the server for a new token and join the unit again (it restarted?)."""
        assert self._link is not None
        grant = await self.transport.call_rejoin(self.call_id)
        self._link.admit(await _resolve(grant.sfu), grant.participant, grant.packet_key)
        await self._join_unit(grant.token)
        self.rejoins += 1
        self.notice("joined the forwarding unit again")

    async def _keep_alive(self) -> None:
        """A KEEPALIVE every second; a rejoin when the unit asks or falls silent, at most one
        per ``JOIN_WAIT`` (a REJECT is untagged, and each rejoin is a request to the server)."""
        assert self._link is not None
        last_rejoin = trio.current_time() - JOIN_WAIT
        while True:
            with trio.move_on_after(KEEPALIVE_INTERVAL):
                await self._rejoin_wanted.wait()
            if self._rejoin_wanted.is_set() or (
                    trio.current_time() - self._heard > UNIT_SILENCE):
                await trio.sleep_until(last_rejoin + JOIN_WAIT)
                last_rejoin = trio.current_time()
                self._rejoin_wanted = trio.Event()
                try:
                    await self._rejoin()
                except ClientError as exc:
                    self.notice(f"could not join the forwarding unit again: {exc}")
                continue
            self._link.send_control(packets.KEEPALIVE)

    async def _stream(self) -> None:
        """Send the synthetic stream at the profile's rate (late frames go at once, no burst)."""
        assert self._link is not None
        profile, link, keys = self.profile, self._link, self.keys
        period = 1 / profile.fps
        deadline = trio.current_time()
        seq = 0
        while True:
            frame = make_frame(profile.kind, seq, int(self.wall_clock() * 1e6),
                               profile.size_of(seq, self.random), self.random)
            header, sealed = keys.encrypt_parts(frame)
            link.send_media(profile.kind, self.level, header, sealed)
            self.sent += 1
            seq += 1
            self.streaming.set()
            deadline = max(deadline + period, trio.current_time() - period)
            await trio.sleep_until(deadline)  # the frame clock

    # -- receiving ---------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        assert self._link is not None
        kind = self._link.accept(data)
        if kind is None:
            return
        self._heard = trio.current_time()
        if kind == packets.FORWARD:
            try:
                sender, _, _ = packets.forward_head(data)
            except MalformedError:
                return
            if sender not in self.present:
                self.ignored += 1
                return
            self._media(sender, data[packets.MEDIA_HEAD_SIZE:])
        elif kind == packets.WELCOME:
            self._welcomed.set()
        elif kind == packets.EVENT:
            self._unit_event(data)
        elif kind == packets.REJECT:
            try:
                participant, _ = packets.reject_body(data)
            except MalformedError:
                return
            if participant != self._link.participant:
                self.ignored += 1
                return
            self._rejoin_wanted.set()

    def _unit_event(self, data: bytes) -> None:
        try:
            event, subject = packets.event_body(data)
        except MalformedError:
            return
        assert self._nursery is not None
        if event == packets.JOINED and subject in self.members:
            self._nursery.start_soon(self.on_joined, subject, self.members[subject])
        elif event in (packets.LEFT, packets.TIMED_OUT):
            why = "timed out" if event == packets.TIMED_OUT else "left"
            self._nursery.start_soon(self.on_left, subject, why)

    def _stream_of(self, sender: int) -> StreamStats | None:
        stats = self.streams.get(sender)
        if stats is None and len(self.streams) < MAX_CALL_PARTICIPANTS:
            stats = self.streams[sender] = StreamStats()
        return stats

    def _media(self, sender: int, sframe: bytes) -> None:
        stats = self._stream_of(sender)
        if stats is None:
            return
        try:
            frame = self.keys.decrypt(sender, sframe)
        except UnknownKeyIdError:
            self._hold(sender, stats, sframe)
            return
        except E2EProtoError:  # a bad tag or header: not from the key's holder
            stats.failed += 1
            return
        self._count(stats, frame)

    def _hold(self, sender: int, stats: StreamStats, sframe: bytes) -> None:
        """Keep a frame until its sender's key arrives: at most ``PENDING_FRAMES`` per sender
        (the oldest goes) and ``PENDING_BYTES`` in all (past it the frame goes); what goes
        counts as ``no_key``."""
        pending = self._pending.setdefault(sender, deque())
        if len(pending) == PENDING_FRAMES:
            self._pending_bytes -= len(pending.popleft())
            stats.no_key += 1
        if self._pending_bytes + len(sframe) > PENDING_BYTES:
            stats.no_key += 1
            return
        pending.append(sframe)
        self._pending_bytes += len(sframe)

    def _count(self, stats: StreamStats, frame: bytes) -> None:
        try:
            _, seq, sent_at = read_frame(frame)
        except MalformedError:
            stats.failed += 1
            return
        stats.frame(seq, self.wall_clock() - sent_at / 1e6)

    def _retry(self, sender: int) -> None:
        """A key of ``sender`` arrived: open the frames that waited for it."""
        pending = self._pending.pop(sender, None)
        if not pending:
            return
        self._pending_bytes -= sum(len(sframe) for sframe in pending)
        stats = self.streams[sender]  # made when its first frame came
        for sframe in pending:
            try:
                self._count(stats, self.keys.decrypt(sender, sframe))
            except UnknownKeyIdError:
                stats.no_key += 1
            except (DecryptionError, E2EProtoError):
                stats.failed += 1

    def report(self, seconds: float) -> CallReport:
        """Everyone's streams as this device received them."""
        rows = []
        for pid in sorted(set(self.streams) | self.present):
            stats = self.streams.get(pid) or StreamStats()
            waiting = len(self._pending.get(pid, ()))
            p50, p99 = stats.latency(0.5), stats.latency(0.99)
            rows.append(ParticipantReport(
                pid, self.members.get(pid), stats.unique, stats.lost, stats.failed,
                stats.no_key + waiting, stats.duplicates, stats.reordered,
                None if p50 is None else p50 * 1000, None if p99 is None else p99 * 1000))
        dropped = ([f"({self.notices_dropped} earlier notices not kept)"]
                   if self.notices_dropped else [])
        return CallReport(self.call_id, self.grant.participant, self.e2e, seconds, self.sent,
                          rows, self.rejoins, dropped + list(self.notices))


async def _resolve(host_port: tuple[str, int]) -> tuple[str, int]:
    """The unit's address as an IP address and port (what datagrams come back from)."""
    host, port = host_port
    try:
        found = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        raise ClientError(f"cannot find the forwarding unit {host}:{port}: {exc}") from None
    address = found[0][4]
    return address[0], address[1]



@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call one may join, as a ring or ``call_list`` says: who started it, where, how full."""

    call_id: bytes
    caller: Address
    participants: int
    limit: int
    e2e: bool
    group: bytes | str | None
    """The group (private: its id; social: its name), or None for a one-to-one call."""
    joined: bool = False
    """Whether this device is in the call already (``call_list`` says)."""


def parse_call_info(entry: object, cap: int) -> CallInfo:
    """A ring or ``call_list`` entry, checked; :class:`ClientError` when malformed."""
    if not isinstance(entry, dict):
        raise ClientError("the server sent a malformed call")
    call_id, caller = entry.get("call_id"), entry.get("from")
    participants = bounded_int(entry.get("participants"), 0, MAX_CALL_PARTICIPANTS)
    limit = bounded_int(entry.get("limit"), 1, MAX_CALL_PARTICIPANTS)
    group = entry.get("group_id")
    if entry.get("group") is True:
        group = entry.get("conversation")
    if (type(call_id) is not bytes or len(call_id) != CALL_ID_SIZE or type(caller) is not list
            or len(caller) != 2 or participants is None or limit is None
            or type(entry.get("e2e")) is not bool
            or not (group is None or (type(group) is bytes and len(group) == CALL_ID_SIZE)
                    or is_valid_account(group))):
        raise ClientError("the server sent a malformed call")
    return CallInfo(call_id, device_address(*caller), participants, min(limit, cap),
                    entry["e2e"], group, entry.get("joined") is True)


def check_room(info: CallInfo, cap: int, transport: str) -> None:
    """Refuse (:class:`ClientError`) to join a call that has ``cap`` participants already."""
    if info.participants >= cap:
        raise ClientError(f"the call is full: a call on the {transport} transport has at most "
                          f"{cap} participants")


MAX_EARLY_NOTICES = 64


class CallBook:
    """The calls a session is in, and notices that arrived before their call was opened.

    Both transports' sessions hand their call notices to :meth:`on_push`. A key pushed right
    after the join answer can be read before the caller has opened the call; it is held (at
    most 64 per call, for at most 8 calls) and handed over on opening.
    """

    def __init__(self) -> None:
        self.active: dict[bytes, ActiveCall] = {}
        self._early: dict[bytes, list[dict[str, Any]]] = {}

    def open(self, call: ActiveCall) -> list[dict[str, Any]]:
        """Add ``call``; the notices that came for it before."""
        self.active[call.call_id] = call
        return self._early.pop(call.call_id, [])

    async def run(self, call: ActiveCall, seconds: float) -> CallReport:
        """Run the opened ``call`` for ``seconds`` (:meth:`ActiveCall.run`); forget it after."""
        try:
            return await call.run(seconds)
        finally:
            self.close(call.call_id)

    def close(self, call_id: bytes) -> None:
        """Forget a call that is over."""
        self.active.pop(call_id, None)
        self._early.pop(call_id, None)

    async def on_push(self, frame: dict[str, Any], cap: int,
                      take_signal: Callable[[ActiveCall, dict[str, Any]], Awaitable[None]]
                      ) -> CallInfo | None:
        """Act on a call notice from the server; the call a ring offers (for the session to
        show), or None.

        ``cap`` is the transport's participant cap; ``take_signal`` opens a ``call_signal``
        (a key in a pairwise envelope) for its call. A notice for a call not opened (yet) is
        held; a malformed one is logged and ignored.
        """
        kind = frame.get("type")
        try:
            if kind == call_api.CALL_RING:
                return parse_call_info(frame, cap)
            call_id = frame.get("call_id")
            call = self.active.get(call_id) if type(call_id) is bytes else None
            if call is None:
                if type(call_id) is bytes and kind != call_api.CALL_ENDED:
                    self.hold(call_id, frame)
                return None
            if kind == call_api.CALL_JOINED:
                pid, address = next(iter(roster([frame.get("participant")], 1).items()))
                await call.on_joined(pid, address)
            elif kind == call_api.CALL_LEFT:
                entry = frame.get("participant")
                pid = participant_id(entry[0] if isinstance(entry, list) and entry else None)
                await call.on_left(pid, "hung up" if frame.get("reason") == call_api.LEFT
                                   else "is gone")
            elif kind == call_api.CALL_ENDED:
                call.ended.set()
            elif kind == call_api.CALL_KEYS:
                raw = frame.get("keys")
                if type(raw) is not list or len(raw) > cap:
                    raise ClientError("malformed call keys")
                call.take_server_keys([CallKey.from_wire(call.call_id, k) for k in raw])
            elif kind == call_api.CALL_SIGNAL:
                await take_signal(call, frame)
        except (ClientError, MalformedError) as exc:
            log.warning("ignored a call notice: %s", exc)
        return None

    def hold(self, call_id: bytes, frame: dict[str, Any]) -> None:
        """Keep a notice for a call not opened (yet), within the bounds."""
        held = self._early.get(call_id)
        if held is None:
            if len(self._early) >= 8:
                self._early.pop(next(iter(self._early)))
            held = self._early[call_id] = []
        if len(held) < MAX_EARLY_NOTICES:
            held.append(frame)

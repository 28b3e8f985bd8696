"""The forwarding unit on its own: admission by token, a tag on every datagram, replays,
unknown addresses, truncated and oversized datagrams, the cap, timeouts, a slow receiver that
loses only its own frames, last-N, and a fuzz that no datagram can make it raise.

The unit's protocol work is driven directly (:meth:`Sfu.handle`, :meth:`Sfu.tick`,
:meth:`Sfu.pace` take the time), over real loopback sockets: a reply the unit sends is in the
participant's socket when ``handle`` returns.
"""

from __future__ import annotations

import socket
import struct
from itertools import count

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_packets import PacketKey
from e2e_proto.call_tokens import issue_token
from e2e_proto.constants import MAX_CALL_DATAGRAM
from server.calls.sfu import Sfu, SfuConfig

KEY = bytes(range(32))
CALL = bytes(16)
NOW_MS = 1_000_000


class Raw:
    """A participant made of a socket and the datagram codecs, to send anything at all."""

    def __init__(self, pid: int, call_id: bytes = CALL, key: bytes = KEY, limit: int = 8,
                 expires: int = NOW_MS + 60_000) -> None:
        self.pid = pid
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.token, packet_key = issue_token(key, call_id, pid, Address(f"user{pid}", 0),
                                             expires, limit)
        self.key = PacketKey(packet_key)
        self._counter = count(1)

    @property
    def peer(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def join(self, max_kbps: int = 0) -> bytes:
        return packets.join_packet(self.key, self.pid, next(self._counter), max_kbps,
                                   self.token)

    def media(self, size: int = 100, level: int = 0) -> bytes:
        return packets.media_packet(self.key, self.pid, next(self._counter), packets.AUDIO,
                                    level, bytes([self.pid]) * size)

    def control(self, kind: int) -> bytes:
        return packets.control_packet(self.key, kind, self.pid, next(self._counter))

    def replies(self) -> list[bytes]:
        found = []
        while True:
            try:
                found.append(self.sock.recv(MAX_CALL_DATAGRAM + 1))
            except BlockingIOError:
                return found

    def types(self) -> list[int]:
        return [packets.packet_type(d) for d in self.replies()]


def welcome_pids(welcome: bytes) -> list[int]:
    """The pids a WELCOME lists, read by its layout in docs/PROTOCOL.md §18.4."""
    count = welcome[13]
    assert len(welcome) == 13 + 1 + 4 * count + 16
    return list(struct.unpack_from(f">{count}I", welcome, 14))


@pytest.fixture
def unit():
    sfu = Sfu(KEY, SfuConfig(queue_packets=8), wall_ms=lambda: NOW_MS)
    sfu.bind("127.0.0.1", 0)
    yield sfu
    sfu.close()


def joined(unit: Sfu, *participants: Raw, now: float = 0.0) -> None:
    for participant in participants:
        unit.handle(participant.join(), participant.peer, now)
    for participant in participants:
        participant.replies()


def test_admission_and_forwarding(unit: Sfu) -> None:
    alice, bob = Raw(1), Raw(2)
    unit.handle(alice.join(), alice.peer, 0.0)
    [welcome] = alice.replies()
    alice.key.verify(welcome)
    assert packets.sealed_head(welcome)[:2] == (packets.WELCOME, 1)
    assert welcome_pids(welcome) == []
    unit.handle(bob.join(), bob.peer, 0.0)
    assert welcome_pids(bob.replies()[0]) == [1]
    [event] = alice.replies()
    assert packets.event_body(event) == (packets.JOINED, 2)
    media = alice.media()
    unit.handle(media, alice.peer, 0.1)
    assert bob.replies() == [packets.forward_of(media)]
    assert alice.replies() == []  # never its own frames back
    unit.handle(alice.control(packets.KEEPALIVE), alice.peer, 0.2)
    [ack] = alice.replies()
    alice.key.verify(ack)
    assert packets.sealed_head(ack)[0] == packets.KEEPALIVE_ACK
    unit.handle(alice.control(packets.LEAVE), alice.peer, 0.3)
    assert packets.event_body(bob.replies()[0]) == (packets.LEFT, 1)
    unit.handle(bob.control(packets.LEAVE), bob.peer, 0.4)
    assert not unit.rooms and unit.stats.joins == 2 and unit.stats.leaves == 2


def test_forged_foreign_mismatched_and_expired_tokens_admit_nobody(unit: Sfu) -> None:
    alice = Raw(1)
    forged = bytearray(alice.token)
    forged[-1] ^= 1
    datagrams = [
        packets.join_packet(alice.key, 1, 1, 0, bytes(forged)),  # a forged tag
        packets.join_packet(Raw(1, key=bytes(32)).key, 1, 1, 0,
                            Raw(1, key=bytes(32)).token),  # made under another key
        packets.join_packet(alice.key, 7, 1, 0, alice.token),  # another participant's token
    ]
    for datagram in datagrams:
        unit.handle(datagram, alice.peer, 0.0)
    assert unit.stats.bad_token == 3
    copied = packets.join_packet(PacketKey(bytes(32)), 1, 1, 0, alice.token)
    unit.handle(copied, alice.peer, 0.0)  # the token, but not its packet key
    assert unit.stats.bad_tag == 1
    assert alice.replies() == [] and not unit.rooms
    late = Raw(2, expires=NOW_MS)
    unit.handle(late.join(), late.peer, 0.0)
    assert unit.stats.expired_token == 1
    assert late.types() == [packets.REJECT] and not unit.rooms


def test_replayed_datagrams_and_older_tokens_are_refused(unit: Sfu) -> None:
    alice, bob = Raw(1), Raw(2)
    join = alice.join()
    unit.handle(join, alice.peer, 0.0)
    joined(unit, bob)
    alice.replies()
    unit.handle(join, alice.peer, 0.1)  # the same JOIN again
    media = alice.media()
    unit.handle(media, alice.peer, 0.2)
    unit.handle(media, alice.peer, 0.3)  # the same MEDIA again
    assert unit.stats.replayed == 2
    assert bob.replies() == [packets.forward_of(media)]
    newer = Raw(1, expires=NOW_MS + 90_000)  # the server's new token for the same participant
    unit.handle(newer.join(), alice.peer, 0.4)
    assert unit.stats.rejoins == 1
    unit.handle(alice.join(), alice.peer, 0.5)  # the older token again
    assert unit.stats.replayed == 3
    unit.handle(alice.media(), alice.peer, 0.6)  # the older packet key no longer counts
    assert unit.stats.bad_tag == 1 and bob.replies() == []


def test_datagrams_from_unknown_addresses_are_refused(unit: Sfu) -> None:
    alice, bob, stranger = Raw(1), Raw(2), Raw(3)
    joined(unit, alice, bob)
    unit.handle(alice.media(), stranger.peer, 0.1)  # alice's valid datagram, elsewhere from
    assert unit.stats.unknown_address == 1 and bob.replies() == []
    [reject] = stranger.replies()
    assert packets.reject_body(reject) == (1, packets.REJECT_NOT_ADMITTED)
    unit.handle(bob.media(), alice.peer, 0.2)  # bob's datagram from alice's address
    assert unit.stats.unknown_address == 2 and alice.replies()[0][0] >> 4 == 1


def test_truncated_oversized_and_altered_datagrams_are_dropped(unit: Sfu) -> None:
    alice, bob = Raw(1), Raw(2)
    joined(unit, alice, bob)
    media = alice.media(300)
    for size in range(len(media)):
        unit.handle(media[:size], alice.peer, 0.1)
    altered = bytearray(media)
    altered[40] ^= 0x80
    unit.handle(bytes(altered), alice.peer, 0.1)
    unit.handle(alice.media(MAX_CALL_DATAGRAM), alice.peer, 0.1)
    stats = unit.stats
    assert stats.oversized == 1
    assert stats.malformed + stats.bad_tag == len(media) + 1
    assert stats.forwarded == 0 and bob.replies() == []
    unit.handle(media, alice.peer, 0.2)  # the whole datagram still counts
    assert bob.replies() == [packets.forward_of(media)]


def test_the_tokens_limit_caps_the_call(unit: Sfu) -> None:
    first, second, third = (Raw(pid, limit=2) for pid in (1, 2, 3))
    joined(unit, first, second)
    unit.handle(third.join(), third.peer, 0.0)
    assert third.types() == [packets.REJECT] and unit.stats.call_full == 1
    assert len(unit.rooms[CALL].participants) == 2


def test_a_silent_participant_times_out_and_the_others_are_told(unit: Sfu) -> None:
    alice, bob, carol = Raw(1), Raw(2), Raw(3)
    joined(unit, alice, bob, carol, now=0.0)
    unit.handle(alice.media(), alice.peer, 4.0)
    unit.handle(bob.control(packets.KEEPALIVE), bob.peer, 4.0)
    for participant in (alice, bob, carol):
        participant.replies()
    unit.tick(5.5)  # carol: silent for 5.5 s > 5 s
    assert set(unit.rooms[CALL].participants) == {1, 2} and unit.stats.timeouts == 1
    for participant in (alice, bob):
        [event] = participant.replies()
        participant.key.verify(event)
        assert packets.event_body(event) == (packets.TIMED_OUT, 3)
    unit.tick(20.0)
    assert not unit.rooms and unit.stats.timeouts == 3


def test_a_slow_receiver_loses_its_own_frames_only(unit: Sfu) -> None:
    sender, fast, slow = Raw(1), Raw(2), Raw(3)
    for participant, kbps in ((sender, 0), (fast, 0), (slow, 8)):  # slow: 1000 bytes a second
        unit.handle(participant.join(kbps), participant.peer, 0.0)
    for participant in (sender, fast, slow):
        participant.replies()
    for _ in range(40):
        unit.handle(sender.media(1000), sender.peer, 0.0)
    assert len(fast.replies()) == 40  # all of them, at once
    first_burst = len(slow.replies())  # its 16 KiB budget
    room = unit.rooms[CALL]
    assert 0 < first_burst < 40 and len(room.participants[3].queue) == 8
    assert room.participants[3].dropped == 40 - first_burst - 8 == unit.stats.dropped
    assert room.participants[2].dropped == 0
    assert unit.pace(100.0)  # the budget refills: the slow receiver's queue drains
    assert len(slow.replies()) == 8 and not room.participants[3].queue


def test_last_n_forwards_only_the_loudest_senders() -> None:
    unit = Sfu(KEY, SfuConfig(last_n=1), wall_ms=lambda: NOW_MS)
    unit.bind("127.0.0.1", 0)
    try:
        loud, quiet, listener = Raw(1), Raw(2), Raw(3)
        joined(unit, loud, quiet, listener)
        for _ in range(30):
            unit.handle(loud.media(level=5), loud.peer, 0.1)
            unit.handle(quiet.media(level=100), quiet.peer, 0.1)
        unit.tick(0.2)
        listener.replies()
        unit.handle(loud.media(level=5), loud.peer, 0.3)
        unit.handle(quiet.media(level=100), quiet.peer, 0.3)
        forwarded = listener.replies()
        assert [packets.forward_head(d)[0] for d in forwarded] == [1]
        assert unit.stats.not_selected == 2  # the quiet sender's one frame, to two receivers
    finally:
        unit.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_no_datagram_makes_the_unit_raise(unit: Sfu, data: st.DataObject) -> None:
    alice, bob = Raw(1), Raw(2)
    joined(unit, alice, bob)
    valid = data.draw(st.sampled_from([alice.media(), alice.join(),
                                       alice.control(packets.KEEPALIVE)]))
    noise = data.draw(st.one_of(
        st.binary(max_size=200),
        st.builds(lambda i, b: valid[:i] + bytes([b]) + valid[i + 1:],
                  st.integers(0, len(valid) - 1), st.integers(0, 255)),
        st.builds(lambda tail: bytes([0x12]) + tail, st.binary(max_size=60))))
    before = unit.stats.forwarded
    unit.handle(noise, data.draw(st.sampled_from([alice.peer, bob.peer, ("127.0.0.1", 9)])),
                1.0)
    assert unit.stats.forwarded - before <= 1
    assert unit.stats.forwarded == before or noise == valid
    alice.sock.close()
    bob.sock.close()


def test_a_counter_far_ahead_neither_crashes_nor_stalls_the_unit(unit: Sfu) -> None:
    # Review finding 1: one KEEPALIVE with counter 2**64-1 from an admitted participant raised
    # MemoryError out of handle(), ending the unit (and a relay or social server running it).
    mallory, bob = Raw(1), Raw(2)
    joined(unit, mallory, bob)
    unit.handle(packets.control_packet(mallory.key, packets.KEEPALIVE, 1, 2**64 - 1),
                mallory.peer, 0.1)
    assert mallory.types() == [packets.KEEPALIVE_ACK]
    unit.handle(bob.media(), bob.peer, 0.2)
    assert mallory.types() == [packets.FORWARD]
    carol = Raw(3)  # a first JOIN with the largest counter
    unit.handle(packets.join_packet(carol.key, 3, 2**64 - 1, 0, carol.token), carol.peer, 0.3)
    assert carol.types() == [packets.WELCOME] and len(unit.rooms[CALL].participants) == 3


async def test_serving_outlives_a_datagram_that_makes_handle_fail() -> None:
    # Review finding 1 (last resort): an exception out of handle() ended serve(), and with it
    # the server whose nursery runs the unit; now it is counted and the unit goes on.
    unit = Sfu(KEY, SfuConfig(), wall_ms=lambda: NOW_MS)
    unit.bind("127.0.0.1", 0)
    handled: list[bytes] = []
    second = trio.Event()

    def failing_once(data: bytes, peer: tuple[str, int], now: float) -> None:
        handled.append(data)
        if len(handled) == 1:
            raise RuntimeError("a bug a datagram found")
        second.set()

    unit.handle = failing_once  # type: ignore[method-assign]
    sender = Raw(1)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(unit.serve)
        sender.sock.sendto(b"first", address)
        sender.sock.sendto(b"second", address)
        with trio.fail_after(10):
            await second.wait()
        nursery.cancel_scope.cancel()
    assert handled == [b"first", b"second"] and unit.stats.errors == 1
    sender.sock.close()


@pytest.mark.parametrize("gone", ["left", "timed out"])
def test_a_join_replayed_after_its_participant_went_admits_nobody(unit: Sfu, gone: str) -> None:
    # Review finding 2: once a participant left or timed out, its JOIN (seen on the network)
    # admitted a new participant at any source address within the token's minute: the whole
    # call's media went there, and the others were told it joined.
    alice, bob, victim = Raw(1), Raw(2), Raw(3)  # victim: a spoofed source address
    captured = alice.join()
    unit.handle(captured, alice.peer, 0.0)
    joined(unit, bob)
    alice.replies()
    if gone == "left":
        unit.handle(alice.control(packets.LEAVE), alice.peer, 1.0)
    else:
        unit.handle(bob.control(packets.KEEPALIVE), bob.peer, 5.5)
        unit.tick(5.6)
    assert set(unit.rooms[CALL].participants) == {2}
    bob.replies()
    unit.handle(captured, victim.peer, 6.0)
    assert set(unit.rooms[CALL].participants) == {2} and unit.stats.replayed == 1
    unit.handle(bob.media(), bob.peer, 6.1)
    assert victim.replies() == [] and bob.replies() == []
    unit.handle(bob.control(packets.LEAVE), bob.peer, 6.2)  # the call is forgotten ...
    unit.handle(captured, victim.peer, 6.3)  # ... but not the tokens used in it
    assert not unit.rooms and victim.replies() == [] and unit.stats.replayed == 2


def test_a_token_replaced_by_a_newer_one_cannot_move_the_participant(unit: Sfu) -> None:
    # Review finding 2: a token with the same expiry as the one that replaced it counted as
    # "newer", so its captured JOIN moved the participant to any address.
    alice, bob, victim = Raw(1), Raw(2), Raw(3)
    captured = alice.join()
    unit.handle(captured, alice.peer, 0.0)
    joined(unit, bob)
    renewed = Raw(1)  # the server's new token for alice: same expiry, another nonce
    unit.handle(renewed.join(), alice.peer, 0.5)
    assert unit.stats.rejoins == 1
    unit.handle(captured, victim.peer, 1.0)
    assert unit.rooms[CALL].participants[1].peer == alice.peer
    assert unit.stats.replayed == 1 and victim.replies() == []


def test_used_tokens_are_remembered_until_they_expire_within_a_bound() -> None:
    wall = [NOW_MS]
    unit = Sfu(KEY, SfuConfig(spent_tokens=3), wall_ms=lambda: wall[0])
    unit.bind("127.0.0.1", 0)
    try:
        soon = [Raw(pid, expires=NOW_MS + 1_000) for pid in (1, 2)]
        later = [Raw(pid, expires=NOW_MS + 60_000) for pid in (3, 4, 5)]
        for participant in soon + later:
            joined(unit, participant)
            unit.handle(participant.control(packets.LEAVE), participant.peer, 0.1)
        assert len(unit.spent) == 3  # the two oldest were forgotten first
        wall[0] = NOW_MS + 60_000
        unit.tick(0.2)
        assert not unit.spent  # expired: their JOINs are refused as expired anyway
        for participant in later:
            participant.sock.close()
    finally:
        unit.close()

"""The client's side of a call, without servers: what a receiver does with bad frames (unknown
senders and KIDs, bad tags, damage: discarded and counted, never a crash), frames that wait for
their key, which keys it takes, and the checks on everything a server says about a call."""

from __future__ import annotations

import math
import time

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.call_link import MediaLink
from client.core.calls import (
    JOIN_WAIT,
    MAX_NOTICES,
    PENDING_BYTES,
    PENDING_FRAMES,
    ActiveCall,
    CallBook,
    CallReport,
    Grant,
    check_room,
    parse_call_info,
    parse_grant,
)
from client.core.errors import ClientError
from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey, CallKeys
from e2e_proto.call_media import AUDIO_PROFILE, make_frame
from e2e_proto.call_tokens import issue_token
from e2e_proto.constants import MAX_CALL_PARTICIPANTS
from e2e_proto.sframe import decode_header
from tests.call_harness import CALL_KEY, start_sfu

CALL = bytes(range(16))
KEY = bytes(32)
ALICE, BOB, MALLORY = Address("alice", 0), Address("bob", 0), Address("mallory", 0)


class Quiet:
    """A transport that records what the call asks of it."""

    def __init__(self) -> None:
        self.keys: list[tuple[CallKey, list[Address]]] = []

    async def call_send_key(self, key: CallKey, targets: list[Address]) -> None:
        self.keys.append((key, targets))

    async def call_rejoin(self, call_id: bytes) -> Grant:
        raise AssertionError("not here")

    async def call_leave(self, call_id: bytes) -> None:
        return None


def grant(participants: dict[int, Address] | None = None, e2e: bool = True) -> Grant:
    token, packet_key = issue_token(KEY, CALL, 1, ALICE, 2**40, 8)
    return Grant(CALL, 1, ("127.0.0.1", 9), token, packet_key, 8, e2e,
                 participants or {1: ALICE, 2: BOB})


def receiving_call(allowed: set[str] | None = None) -> tuple[ActiveCall, Quiet]:
    transport = Quiet()
    call = ActiveCall(transport, grant(), AUDIO_PROFILE,
                      allowed=lambda a: a.account in (allowed or {"alice", "bob"}))
    call._link = MediaLink(("127.0.0.1", 9), 1, grant().packet_key)
    return call, transport


def forward(sender: int, sframe: bytes) -> bytes:
    return packets.FORWARD_BYTE + sender.to_bytes(4, "big") + bytes(8) + b"\x00\x00" + sframe


def bob_keys() -> CallKeys:
    return CallKeys.fresh(CALL, 2)


def frame(keys: CallKeys, seq: int) -> bytes:
    return keys.encrypt(make_frame(packets.AUDIO, seq, 0, 160))


async def test_frames_wait_for_their_key_then_count() -> None:
    call, _ = receiving_call()
    bob = bob_keys()
    for seq in range(3):
        call._on_datagram(forward(2, frame(bob, seq)))
    assert call.streams[2].received == 0
    call.on_key(BOB, bob.own_key)
    assert call.streams[2].received == 3 and call.streams[2].no_key == 0
    call._on_datagram(forward(2, frame(bob, 3)))
    assert call.streams[2].unique == 4 and call.streams[2].lost == 0


async def test_bad_tags_unknown_kids_unknown_senders_and_damage_are_counted() -> None:
    call, _ = receiving_call()
    bob = bob_keys()
    call.on_key(BOB, bob.own_key)
    good = frame(bob, 0)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    call._on_datagram(forward(2, tampered))
    call._on_datagram(forward(2, b"\x00"))  # a header without a tag
    other = CallKeys.fresh(CALL, 2)  # the same pid, another key: a forgery
    call._on_datagram(forward(2, frame(other, 0)))
    later = CallKeys.fresh(CALL, 2)
    later.renew()
    later.renew()  # generation 2: no key held or reachable
    call._on_datagram(forward(2, frame(later, 0)))
    call._on_datagram(forward(7, frame(bob, 1)))  # a participant nobody announced: ignored
    call._on_datagram(forward(2, b""))  # a FORWARD too short to carry anything
    call._on_datagram(b"\x28" + bytes(40))  # another version
    stats = call.streams[2]
    assert stats.failed == 3 and stats.received == 0
    report = call.report(1.0)
    rows = {row.participant: row for row in report.participants}
    assert rows[2].no_key == 1 and 7 not in rows and call.ignored == 1
    call._on_datagram(forward(2, good))
    assert stats.received == 1
    assert call._link is not None and call._link.dropped == 1


async def test_waiting_frames_are_bounded() -> None:
    call, _ = receiving_call()
    bob = bob_keys()
    for seq in range(PENDING_FRAMES + 10):
        call._on_datagram(forward(2, frame(bob, seq)))
    assert call.streams[2].no_key == 10
    assert call.report(1.0).participants[0].no_key == PENDING_FRAMES + 10


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_no_datagram_makes_a_receiver_raise(data: bytes) -> None:
    async def feed() -> None:
        call, _ = receiving_call()
        call._on_datagram(data)
        call._on_datagram(forward(2, data))

    trio.run(feed)


def test_keys_are_taken_only_from_the_device_holding_the_pid() -> None:
    call, _ = receiving_call(allowed={"alice", "bob"})
    bob = bob_keys()
    call.on_key(MALLORY, bob.own_key)  # the server says pid 2 is bob.0
    call.on_key(Address("bob", 1), bob.own_key)  # another of bob's devices
    wrong_call = CallKey(bytes(16), 2, bob.own_key.kid, bob.own_key.base_key)
    call.on_key(BOB, wrong_call)
    assert not call.keys.holds(2) and len(call.notices) == 3
    strict, _ = receiving_call(allowed={"alice"})  # bob is not in the conversation by our books
    strict.on_key(BOB, bob.own_key)
    assert not strict.keys.holds(2)
    call.on_key(BOB, bob.own_key)
    assert call.keys.holds(2)


async def test_keys_go_only_to_allowed_devices_ratcheted_on_join_renewed_on_leave() -> None:
    transport = Quiet()
    call = ActiveCall(transport, grant({1: ALICE, 2: BOB}), AUDIO_PROFILE,
                      allowed=lambda a: a.account != "mallory")
    first = call.keys.own_key
    await call.on_joined(3, MALLORY)  # present, but gets no key
    await call.on_joined(4, Address("carol", 0))
    await call.on_joined(4, Address("carol", 0))  # reported twice: acted on once
    assert [(targets, key.kid) for key, targets in transport.keys] == [
        ([Address("carol", 0)], first.kid + 2)]
    await call.on_left(2, "hung up")
    await call.on_left(2, "timed out")
    key, targets = transport.keys[-1]
    assert len(transport.keys) == 2 and key.kid >> 8 == 1
    assert targets == [Address("carol", 0)]  # not mallory, not bob


async def test_the_watcher_hears_each_join_and_leave_once() -> None:
    heard: list[tuple[str, int, Address | None]] = []
    call = ActiveCall(Quiet(), grant({1: ALICE, 2: BOB}), AUDIO_PROFILE,
                      allowed=lambda a: True, watch=lambda *change: heard.append(change))
    await call.on_joined(3, Address("carol", 0))
    await call.on_joined(3, Address("carol", 0))  # the server and the unit both say so
    await call.on_joined(1, ALICE)  # this device
    await call.on_left(2, "hung up")
    await call.on_left(2, "timed out")
    assert heard == [("joined", 3, Address("carol", 0)), ("hung up", 2, BOB)]


class RefusingLeave(Quiet):
    """A transport whose server refuses the leave (the call ended meanwhile)."""

    async def call_leave(self, call_id: bytes) -> None:
        raise ClientError("the relay refused the call request: no such call (unknown_call)")


async def test_stop_ends_a_call_and_a_refused_leave_is_a_notice(nursery: trio.Nursery) -> None:
    unit = await start_sfu(nursery)
    token, packet_key = issue_token(CALL_KEY, CALL, 1, ALICE, int(time.time() * 1000) + 60_000,
                                    8)
    call = ActiveCall(RefusingLeave(), Grant(CALL, 1, (unit.grant.host, unit.grant.port), token,
                                             packet_key, 8, True, {1: ALICE}),
                      AUDIO_PROFILE, allowed=lambda a: True)
    reports: list[CallReport] = []

    async def run() -> None:
        reports.append(await call.run(math.inf))

    with trio.fail_after(10):  # without stop() the call would run for ever
        async with trio.open_nursery() as running:
            running.start_soon(run)
            await call.streaming.wait()
            call.stop()
    [report] = reports
    assert report.sent > 0 and report.participants == [] and call.left
    assert report.notices == ["could not leave the call at the server: the relay refused the "
                              "call request: no such call (unknown_call)"]
    assert CallReport.from_json(report.as_json()).as_json() == report.as_json()


def test_server_answers_are_checked() -> None:
    token, packet_key = issue_token(KEY, CALL, 1, ALICE, 2**40, 8)
    good = {"call_id": CALL, "participant": 1, "sfu": "127.0.0.1:7600", "token": token,
            "packet_key": packet_key, "limit": 8, "e2e": True,
            "participants": [[1, "alice", 0]]}
    parsed = parse_grant(good, 8)
    assert parsed.sfu == ("127.0.0.1", 7600) and parsed.participants == {1: ALICE}
    assert parse_grant({**good, "sfu": "[::1]:7600"}, 8).sfu == ("::1", 7600)
    for bad in ({"call_id": b"x"}, {"sfu": "nohost"}, {"sfu": "h:0"}, {"token": b"t"},
                {"packet_key": bytes(31)}, {"limit": 0}, {"limit": True}, {"e2e": 1},
                {"participant": 0}, {"participants": [[1, "Alice", 0]]},
                {"participants": [[1, "alice"]]}, {"participants": [[1, "a", 0]] * 9},
                {"limit": 9}, {"e2e": False}, {"e2e": False, "keys": [[1, 0, b"x"]]}):
        with pytest.raises(ClientError):
            parse_grant({**good, **bad}, 8)
    keyed = parse_grant({**good, "e2e": False, "keys": [[1, 0, bytes(32)]]}, 8)
    assert keyed.keys == (CallKey(CALL, 1, 0, bytes(32)),)
    assert parse_grant(good, 8, end_to_end=True).e2e
    with pytest.raises(ClientError, match="without end-to-end encryption"):
        parse_grant({**good, "e2e": False, "keys": [[1, 0, bytes(32)]]}, 8, end_to_end=True)


async def test_joins_beyond_the_limit_and_names_beyond_the_bound_are_not_kept() -> None:
    transport = Quiet()
    call = ActiveCall(transport, grant({1: ALICE, 2: BOB}), AUDIO_PROFILE,
                      allowed=lambda a: True)
    for pid in range(3, 20):  # the grant's limit is 8: this device, bob and six more
        await call.on_joined(pid, Address(f"p{pid}", 0))
    assert call.present == {2, *range(3, 9)} and call.ignored == 11
    assert len(transport.keys) == 6 and "already has its 8 participants" in call.notices[-1]
    for round_ in range(MAX_CALL_PARTICIPANTS):  # a server announcing join/leave for ever
        pid = 100 + round_
        await call.on_left(8)
        await call.on_joined(pid, Address(f"q{round_}", 0))
        await call.on_left(pid)
        await call.on_joined(8, Address("p8", 0))
    assert len(call.members) == MAX_CALL_PARTICIPANTS
    assert {1, 2, *range(3, 9)} <= set(call.members)  # present ones and this device stay


def test_call_listings_are_checked_and_full_calls_refused_here() -> None:
    entry = {"call_id": CALL, "from": ["alice", 0], "participants": 8, "limit": 8,
             "e2e": True, "group_id": None, "joined": False}
    info = parse_call_info(entry, 8)
    with pytest.raises(ClientError, match="at most 8 participants"):
        check_room(info, 8, "private")
    social = parse_call_info({**entry, "group": True, "conversation": "club",
                              "participants": 3}, 50)
    assert social.group == "club"
    check_room(social, 50, "social")
    for bad in ({"call_id": 1}, {"from": ["alice"]}, {"participants": -1}, {"e2e": None},
                {"group_id": b"short"}, {"group": True, "conversation": "No Name"}):
        with pytest.raises(ClientError):
            parse_call_info({**entry, **bad}, 8)
    with pytest.raises(ClientError):
        parse_call_info("not a map", 8)


def test_notices_before_a_call_opens_are_held_within_bounds() -> None:
    book = CallBook()
    for index in range(10):
        for frame_number in range(70):
            book.hold(bytes([index]) * 16, {"n": frame_number})
    assert len(book._early) == 8
    call, _ = receiving_call()
    call.call_id = bytes([9]) * 16
    assert [f["n"] for f in book.open(call)] == list(range(64))
    book.close(call.call_id)
    assert not book.active


async def test_one_router_serves_both_transports_call_notices() -> None:
    book = CallBook()
    signals: list[dict] = []

    async def take_signal(call: ActiveCall, frame: dict) -> None:
        signals.append(frame)

    ring = {"type": "call_ring", "call_id": CALL, "from": ["bob", 0], "participants": 1,
            "limit": 8, "e2e": True, "group_id": None}
    info = await book.on_push(ring, 8, take_signal)
    assert info is not None and info.caller == BOB
    assert await book.on_push({**ring, "limit": "x"}, 8, take_signal) is None  # logged only
    early = {"type": "call_signal", "call_id": CALL, "from": [2, "bob", 0], "envelope": b""}
    await book.on_push(early, 8, take_signal)
    await book.on_push({"type": "call_ended", "call_id": CALL}, 8, take_signal)
    call, _ = receiving_call()
    assert book.open(call) == [early] and not signals  # held until opened; "ended" was not
    await book.on_push(early, 8, take_signal)
    await book.on_push({"type": "call_joined", "call_id": CALL,
                        "participant": [3, "carol", 0]}, 8, take_signal)
    await book.on_push({"type": "call_left", "call_id": CALL, "participant": [2],
                        "reason": "left"}, 8, take_signal)
    for malformed in ({"type": "call_joined", "call_id": CALL, "participant": [0, "x", 0]},
                      {"type": "call_left", "call_id": CALL, "participant": "2"},
                      {"type": "call_keys", "call_id": CALL, "keys": [[1, 0]]}):
        await book.on_push(malformed, 8, take_signal)
    assert signals == [early] and call.present == {3}
    assert list(call.notices)[-2:] == ["carol.0 joined", "bob.0 hung up"]
    await book.on_push({"type": "call_ended", "call_id": CALL}, 8, take_signal)
    assert call.ended.is_set()


def test_a_link_accepts_only_fresh_tagged_datagrams_from_the_unit() -> None:
    _, packet_key = issue_token(KEY, CALL, 1, ALICE, 2**40, 8)
    link = MediaLink(("127.0.0.1", 9), 1, packet_key)
    key = packets.PacketKey(packet_key)
    welcome = packets.welcome_packet(key, 1, 5, [2])
    assert link.accept(welcome) == packets.WELCOME
    assert link.accept(welcome) is None  # replayed
    assert link.accept(packets.welcome_packet(key, 2, 6, [])) is None  # for another pid
    assert link.accept(packets.welcome_packet(packets.PacketKey(KEY), 1, 7, [])) is None
    assert link.accept(packets.reject_packet(1, packets.REJECT_TOKEN)) == packets.REJECT
    assert link.dropped == 3
    link.close()
    with pytest.raises(OSError):
        link._sock.send(b"x")


async def test_forwards_from_senders_not_in_the_call_are_ignored() -> None:
    # Review finding 4: FORWARD is untagged, and any sender id up to 255 got a stream and 64
    # waiting frames of up to 16 KiB (about 267 MB from anyone who can spoof the unit).
    call, _ = receiving_call()
    for sender in (1, 3, 7, 255):  # itself, and ids the server never announced
        call._on_datagram(forward(sender, b"\x0f" + bytes(16_000)))
    assert not call.streams and not call._pending and call.ignored == 4


async def test_frames_waiting_for_keys_are_bounded_in_total() -> None:
    # Review finding 4: the waiting frames were bounded per sender only.
    members = {pid: Address(f"user{pid}", 0) for pid in range(1, 9)}
    call = ActiveCall(Quiet(), grant(members), AUDIO_PROFILE, allowed=lambda a: True)
    call._link = MediaLink(("127.0.0.1", 9), 1, grant().packet_key)
    waiting = b"\x0f" + bytes(16_000)  # KID 15: no key held
    for sender in range(2, 9):
        for _ in range(PENDING_FRAMES):
            call._on_datagram(forward(sender, waiting))
    held = sum(len(f) for frames in call._pending.values() for f in frames)
    assert PENDING_BYTES - len(waiting) < held <= PENDING_BYTES
    refused = 7 * PENDING_FRAMES - held // len(waiting)
    assert sum(stats.no_key for stats in call.streams.values()) == refused
    report = call.report(1.0)
    assert sum(row.no_key for row in report.participants) == 7 * PENDING_FRAMES


async def test_only_a_reject_for_this_participant_asks_for_a_new_token() -> None:
    # Review finding 4: REJECT is untagged and its pid was not read, so anyone could make the
    # client ask its server for a new token with any datagram of type REJECT.
    call, _ = receiving_call()
    for datagram in (packets.reject_packet(2, packets.REJECT_NOT_ADMITTED),
                     packets.reject_packet(1, packets.REJECT_TOKEN) + b"x", b"\x1c"):
        call._on_datagram(datagram)
    assert not call._rejoin_wanted.is_set()
    call._on_datagram(packets.reject_packet(1, packets.REJECT_NOT_ADMITTED))
    assert call._rejoin_wanted.is_set()


class Refusing(Quiet):
    """A transport whose server refuses every new token."""

    def __init__(self) -> None:
        super().__init__()
        self.rejoins = 0

    async def call_rejoin(self, call_id: bytes) -> Grant:
        self.rejoins += 1
        raise ClientError("refused")


async def test_rejoins_happen_at_most_once_per_join_wait(autojump_clock) -> None:
    # Review finding 4: every REJECT cost a call_join at the server, back to back.
    transport = Refusing()
    call = ActiveCall(transport, grant(), AUDIO_PROFILE, allowed=lambda a: True)
    call._link = MediaLink(("127.0.0.1", 9), 1, grant().packet_key)
    reject = packets.reject_packet(1, packets.REJECT_NOT_ADMITTED)
    seconds = 10
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call._keep_alive)
        for _ in range(seconds * 100):
            call._on_datagram(reject)
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert seconds / JOIN_WAIT - 1 <= transport.rejoins <= seconds / JOIN_WAIT + 1
    call._link.close()


async def test_server_keys_handed_out_again_never_repeat_a_nonce() -> None:
    # Review finding 15: every call_keys push made a new sender context at CTR 0, so a server
    # resending this device's unchanged key made it reuse AES-GCM nonces, visibly.
    first, second = CallKey(CALL, 1, 0, bytes(range(32))), CallKey(CALL, 1, 1, bytes(32))
    call = ActiveCall(Quiet(), grant(e2e=False), AUDIO_PROFILE, allowed=lambda a: True)
    used = []
    for own in (first, first, second, first):  # resent, changed, and an earlier one again
        call.take_server_keys([own])
        kid, ctr, _ = decode_header(call.keys.encrypt(b"frame"))
        used.append((own.base_key, kid, ctr))
    assert len(set(used)) == len(used)


def test_an_end_to_end_call_takes_no_keys_from_the_server() -> None:
    # Found while merging the two _on_call_push (not in the review): a social server's
    # call_keys push reached take_server_keys in a secret (end-to-end) call too, so the server
    # could make this device send under a key it knows, and slip in keys for the others.
    call, _ = receiving_call()
    own = call.keys.own_key
    call.take_server_keys([CallKey(CALL, 1, 0, bytes(32)), CallKey(CALL, 2, 0, bytes(32))])
    assert call.keys.own_key == own and not call.keys.holds(2)
    assert call.notices[-1] == "refused call keys from the server: the call is end to end"


def test_a_calls_notices_are_bounded() -> None:
    # Review finding 16: notices grew without bound (a refused key from a server or peer
    # sending them without end, say).
    call, _ = receiving_call()
    for _ in range(1000):
        call.on_key(MALLORY, bob_keys().own_key)
    call.on_key(Address("bob", 1), bob_keys().own_key)
    assert len(call.notices) == MAX_NOTICES
    notices = call.report(1.0).notices
    assert len(notices) == MAX_NOTICES + 1
    assert notices[0] == f"({1001 - MAX_NOTICES} earlier notices not kept)"
    assert notices[-1] == "refused a call key from bob.1"


def test_a_link_survives_a_counter_far_ahead() -> None:
    # Review finding 1: MediaLink.accept shifted its replay window by the jump, so a unit
    # sending counter 2**64-1 crashed the client with MemoryError.
    _, packet_key = issue_token(KEY, CALL, 1, ALICE, 2**40, 8)
    link = MediaLink(("127.0.0.1", 9), 1, packet_key)
    key = packets.PacketKey(packet_key)
    ack = packets.KEEPALIVE_ACK
    assert link.accept(packets.control_packet(key, ack, 1, 1)) == ack
    assert link.accept(packets.control_packet(key, ack, 1, 2**64 - 1)) == ack
    assert link.accept(packets.control_packet(key, ack, 1, 2**64 - 1)) is None
    assert link.accept(packets.control_packet(key, ack, 1, 2**64 - 2)) == ack
    link.close()


def test_the_call_command_line() -> None:
    from client.cli.main import build_parser, main

    args = build_parser().parse_args(["call", "bob", "--seconds", "3", "--video", "--json"])
    assert (args.name, args.seconds, args.video, args.json, args.answer) == (
        "bob", 3.0, True, True, False)
    assert build_parser().parse_args(["call", "--answer"]).seconds == 10.0
    for argv in (["call"], ["call", "bob", "--answer"], ["call", "--group", "g", "bob"],
                 ["call", "bob", "--seconds", "-1"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2

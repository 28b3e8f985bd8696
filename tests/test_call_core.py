"""The sans-IO call core: join tokens, datagrams and their tags, the replay window, synthetic
frames and stream statistics, and the call key schedule (docs/PROTOCOL.md §18).

Tags and derived keys are checked against pyca/cryptography's HMAC, computed here from the
layout in the docs (the prefixes are spelled out again, not imported).
"""

from __future__ import annotations

import itertools
import struct
import tracemalloc
import zlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as pyca_hmac
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_proto import call_packets as packets
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey, CallKeys
from e2e_proto.call_media import (
    AUDIO_PROFILE,
    VIDEO_PROFILE,
    StreamStats,
    fixed_profile,
    make_frame,
    read_frame,
)
from e2e_proto.call_tokens import MAX_TOKEN_SIZE, issue_token, verify_token
from e2e_proto.constants import CALL_KEPT_GENERATIONS
from e2e_proto.errors import (
    CallTokenError,
    DecryptionError,
    ExpiredCallTokenError,
    LocalProtocolError,
    MalformedError,
    PacketAuthenticationError,
    UnknownKeyIdError,
)
from e2e_proto.payload import Payload
from e2e_proto.sframe import SenderContext, split_sender_key_kid

CALL_KEY = bytes(range(32))
CALL_ID = bytes(range(100, 116))
ALICE = Address("alice", 3)


def pyca_hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = pyca_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


_COUNTER = itertools.count()


def counter_random(size: int) -> bytes:
    return bytes((next(_COUNTER) + i) % 256 for i in range(size))


# -- join tokens ------------------------------------------------------------------------------


def test_token_layout_tag_and_packet_key_match_an_independent_computation() -> None:
    token, packet_key = issue_token(CALL_KEY, CALL_ID, 7, ALICE, 5_000, 8,
                                    random=lambda n: b"\xab" * n)
    body = (bytes([1]) + CALL_ID + struct.pack(">IIQH", 7, 3, 5_000, 8) + b"\xab" * 16
            + bytes([5]) + b"alice")
    assert token == body + pyca_hmac_sha256(CALL_KEY, b"e2e-proto/call-token/v1" + body)
    assert packet_key == pyca_hmac_sha256(CALL_KEY, b"e2e-proto/call-packet-key/v1" + body)
    checked = verify_token(CALL_KEY, token, 4_999)
    assert (checked.call_id, checked.participant, checked.address, checked.expires_ms,
            checked.limit, checked.body) == (CALL_ID, 7, ALICE, 5_000, 8, body)


def test_tokens_expire_and_other_keys_are_refused() -> None:
    token, _ = issue_token(CALL_KEY, CALL_ID, 1, ALICE, 1_000, 8)
    with pytest.raises(ExpiredCallTokenError):
        verify_token(CALL_KEY, token, 1_000)
    with pytest.raises(CallTokenError) as refused:
        verify_token(bytes(32), token, 0)
    assert not isinstance(refused.value, ExpiredCallTokenError)


@settings(max_examples=60)
@given(st.data())
def test_every_altered_token_is_refused(data: st.DataObject) -> None:
    token, _ = issue_token(CALL_KEY, CALL_ID, 2, ALICE, 10_000, 50)
    index = data.draw(st.integers(0, len(token) - 1))
    flip = data.draw(st.integers(1, 255))
    altered = token[:index] + bytes([token[index] ^ flip]) + token[index + 1:]
    with pytest.raises(CallTokenError):
        verify_token(CALL_KEY, altered, 0)
    cut = data.draw(st.integers(0, len(token) - 1))
    with pytest.raises(CallTokenError):
        verify_token(CALL_KEY, token[:cut], 0)
    with pytest.raises(CallTokenError):
        verify_token(CALL_KEY, token + data.draw(st.binary(min_size=1, max_size=40)), 0)


def test_token_arguments_are_checked() -> None:
    for args in ((b"short", CALL_ID, 1, ALICE, 1, 8), (CALL_KEY, b"x", 1, ALICE, 1, 8),
                 (CALL_KEY, CALL_ID, 0, ALICE, 1, 8), (CALL_KEY, CALL_ID, 1, ALICE, 1, 0),
                 (CALL_KEY, CALL_ID, 1, ALICE, 1, 256), (CALL_KEY, CALL_ID, 1, ALICE, -1, 8),
                 (CALL_KEY, CALL_ID, 1, Address("Not valid", 0), 1, 8)):
        with pytest.raises(LocalProtocolError):
            issue_token(*args)  # type: ignore[arg-type]
    longest, _ = issue_token(CALL_KEY, CALL_ID, 1, Address("a" * 64, 2**32 - 1), 1, 8)
    assert len(longest) == MAX_TOKEN_SIZE


# -- datagrams --------------------------------------------------------------------------------


def test_sealed_datagrams_carry_an_independent_tag() -> None:
    key_bytes = bytes(range(32, 64))
    key = packets.PacketKey(key_bytes)
    datagram = packets.media_packet(key, 9, 12, packets.VIDEO, 30, b"sframe bytes")
    unsealed = struct.pack(">BIQBB", 0x12, 9, 12, packets.VIDEO, 30) + b"sframe bytes"
    assert datagram == unsealed + pyca_hmac_sha256(key_bytes, unsealed)[:16]
    assert packets.media_packet(key, 9, 12, packets.VIDEO, 30, b"sframe", b" bytes") == datagram
    key.verify(datagram)
    assert packets.sealed_head(datagram) == (packets.MEDIA, 9, 12)
    assert packets.media_head(datagram) == (packets.VIDEO, 30)
    forward = packets.forward_of(datagram)
    assert forward == b"\x18" + unsealed[1:]
    assert packets.forward_head(forward) == (9, packets.VIDEO, 30)
    assert forward[packets.MEDIA_HEAD_SIZE:] == b"sframe bytes"


@settings(max_examples=60)
@given(st.data())
def test_every_altered_datagram_is_refused(data: st.DataObject) -> None:
    key = packets.PacketKey(CALL_KEY)
    token, _ = issue_token(CALL_KEY, CALL_ID, 1, ALICE, 1, 8)
    datagram = data.draw(st.sampled_from([
        packets.join_packet(key, 1, 0, 500, token),
        packets.media_packet(key, 1, 1, packets.AUDIO, 0, b"x" * 30),
        packets.control_packet(key, packets.KEEPALIVE, 1, 2),
        packets.welcome_packet(key, 1, 3, [2, 3]),
        packets.event_packet(key, 1, 4, packets.LEFT, 2)]))
    key.verify(datagram)
    index = data.draw(st.integers(0, len(datagram) - 1))
    altered = datagram[:index] + bytes([datagram[index] ^ data.draw(st.integers(1, 255))]) \
        + datagram[index + 1:]
    with pytest.raises(PacketAuthenticationError):
        key.verify(altered)
    with pytest.raises(PacketAuthenticationError):
        key.verify(datagram[:data.draw(st.integers(0, len(datagram) - 1))])
    with pytest.raises(PacketAuthenticationError):
        packets.PacketKey(bytes(32)).verify(datagram)


def test_datagram_bodies_round_trip_and_lies_are_malformed() -> None:
    key = packets.PacketKey(CALL_KEY)
    join = packets.join_packet(key, 4, 0, 1234, b"token bytes")
    assert packets.join_body(join) == (1234, b"token bytes")
    for others in ([1, 2, 3], []):
        welcome = packets.welcome_packet(key, 4, 1, others)
        key.verify(welcome)
        assert welcome[:-16] == (struct.pack(">BIQB", 0x19, 4, 1, len(others))
                                 + b"".join(struct.pack(">I", pid) for pid in others))
    assert packets.event_body(packets.event_packet(key, 4, 2, packets.TIMED_OUT, 9)) == (
        packets.TIMED_OUT, 9)
    reject = packets.reject_packet(4, packets.REJECT_FULL)
    assert packets.packet_type(reject) == packets.REJECT
    assert packets.reject_body(reject) == (4, packets.REJECT_FULL)
    for bad in (packets.control_packet(key, packets.JOIN, 4, 0),
                packets.control_packet(key, packets.MEDIA, 4, 0)):
        with pytest.raises(MalformedError):
            {packets.JOIN: packets.join_body,
             packets.MEDIA: packets.media_head}[packets.sealed_head(bad)[0]](bad)
    for short in (b"", b"\x12" * 28, b"\x22" + bytes(40)):
        with pytest.raises(MalformedError):
            packets.sealed_head(short)
    for bad in (b"", b"\x28" + bytes(20)):
        with pytest.raises(MalformedError):
            packets.packet_type(bad)
    with pytest.raises(MalformedError):
        packets.forward_head(b"\x18" + bytes(14))
    with pytest.raises(MalformedError):
        packets.reject_body(reject + b"x")


@given(st.lists(st.one_of(st.integers(0, 400), st.integers(0, 2**64 - 1)), max_size=200))
def test_replay_window_accepts_each_counter_once(counters: list[int]) -> None:
    window = packets.ReplayWindow()
    accepted: set[int] = set()
    for counter in counters:
        highest = max(accepted, default=-1)
        expected = counter not in accepted and counter > highest - 128
        assert window.fresh(counter) == expected
        if expected:
            window.mark(counter)
            accepted.add(counter)


def peak_allocation(work: Callable[[], object]) -> int:
    """The most memory ``work`` held at once (bytes, as tracemalloc counts it)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_counter_far_ahead_restarts_the_replay_window() -> None:
    # Review finding 1: the window was shifted by the jump, so one datagram with counter 2**64-1
    # made a 2**64-bit integer (MemoryError out of the unit) and 2**33 a 1 GiB one.
    window = packets.ReplayWindow()
    window.mark(1)

    def jump() -> None:
        for counter in (2**30, 2**64 - 1):
            assert window.fresh(counter)
            window.mark(counter)

    assert peak_allocation(jump) < 4096
    top = 2**64 - 1
    assert not window.fresh(top) and not window.fresh(2**30) and not window.fresh(1)
    assert window.fresh(top - 1) and window.fresh(top - 127) and not window.fresh(top - 128)
    window.mark(top - 127)
    assert not window.fresh(top - 127)


# -- synthetic frames and statistics ----------------------------------------------------------


def test_frames_round_trip_and_any_damage_is_caught() -> None:
    frame = make_frame(packets.VIDEO, 77, 123_456, 1024)
    assert len(frame) == 1024 and read_frame(frame) == (packets.VIDEO, 77, 123_456)
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])
    for index in range(0, len(frame), 7):
        damaged = frame[:index] + bytes([frame[index] ^ 0x40]) + frame[index + 1:]
        with pytest.raises(MalformedError):
            read_frame(damaged)
    for bad in (frame[:19], frame[:-1], b""):
        with pytest.raises(MalformedError):
            read_frame(bad)
    with pytest.raises(LocalProtocolError):
        make_frame(7, 0, 0, 100)


def test_profiles_have_the_issue_sizes_and_rates() -> None:
    assert (AUDIO_PROFILE.fps, {AUDIO_PROFILE.size_of(s) for s in range(60)}) == (50, {160})
    sizes = [VIDEO_PROFILE.size_of(s) for s in range(90)]
    assert VIDEO_PROFILE.fps == 30 and sizes[0] == sizes[30] == sizes[60] == 8192
    assert all(1024 <= size <= 8192 for size in sizes) and len(set(sizes)) > 10
    assert {fixed_profile(packets.VIDEO, 30, 4096).size_of(s) for s in range(40)} == {4096}


@settings(max_examples=200)
@given(st.data())
def test_stream_stats_count_loss_duplicates_and_reordering(data: st.DataObject) -> None:
    total = data.draw(st.integers(1, 300))
    arrived = data.draw(st.lists(st.integers(0, total - 1), max_size=400))
    stats = StreamStats()
    for seq in arrived:
        stats.frame(seq, 0.001 * seq)
    unique = set(arrived)
    assert stats.received == len(arrived)
    assert stats.unique == len(unique)
    assert stats.duplicates == len(arrived) - len(unique)
    if unique:
        assert stats.lost == max(unique) - min(unique) + 1 - len(unique)
        firsts = {seq: index for index, seq in reversed(list(enumerate(arrived)))}
        late = sum(1 for seq, index in firsts.items()
                   if any(arrived[i] > seq for i in range(index)))
        assert stats.reordered == late
    else:
        assert stats.lost == 0 and stats.latency(0.5) is None


def test_a_sequence_number_far_ahead_restarts_the_stats_window() -> None:
    # Review finding 6: the seen-bitmap was shifted by the jump, so a peer's frame with seq
    # 2**32-1 after seq 0 built a 512 MiB integer and took about two seconds.
    stats = StreamStats()
    stats.frame(0, 0.0)
    assert peak_allocation(lambda: stats.frame(2**32 - 1, 0.0)) < 4096
    stats.frame(2**32 - 2, 0.0)  # just behind: reordered, not a duplicate
    stats.frame(2**32 - 1, 0.0)
    assert (stats.received, stats.unique, stats.duplicates, stats.reordered) == (4, 3, 1, 1)
    assert stats.lost == 2**32 - 3


def test_latency_percentiles_are_nearest_rank() -> None:
    stats = StreamStats()
    for seq in range(100):
        stats.frame(seq, (seq + 1) / 1000)
    assert stats.latency(0.5) == 0.050 and stats.latency(0.99) == 0.099
    assert stats.latency(1.0) == 0.100


# -- the key schedule -------------------------------------------------------------------------


def pair() -> tuple[CallKeys, CallKeys]:
    alice, bob = CallKeys.fresh(CALL_ID, 1), CallKeys.fresh(CALL_ID, 2)
    alice.add(bob.own_key)
    bob.add(alice.own_key)
    return alice, bob


def test_participants_exchange_keys_and_frames() -> None:
    alice, bob = pair()
    assert bob.decrypt(1, alice.encrypt(b"from alice")) == b"from alice"
    assert alice.decrypt(2, bob.encrypt(b"from bob")) == b"from bob"
    with pytest.raises(UnknownKeyIdError):
        alice.decrypt(3, bob.encrypt(b"x"))
    other_call = CallKeys(bytes(16), 2, bob._sender)
    other_call.add(CallKey(bytes(16), 1, alice.own_key.kid, alice.own_key.base_key))
    with pytest.raises(DecryptionError):  # the call id is authenticated
        other_call.decrypt(1, alice.encrypt(b"replayed into another call"))


def test_a_newcomer_cannot_read_earlier_frames() -> None:
    alice, bob = pair()
    before = alice.encrypt(b"said before carol joined")
    carol = CallKeys.fresh(CALL_ID, 3)
    carol.add(alice.ratchet())  # alice's key after the join
    after = alice.encrypt(b"said after")
    assert carol.decrypt(1, after) == b"said after"
    assert bob.decrypt(1, after) == b"said after"  # bob follows the ratchet on his own
    assert bob.decrypt(1, before) == b"said before carol joined"
    with pytest.raises(UnknownKeyIdError):
        carol.decrypt(1, before)


def test_a_leaver_cannot_read_later_frames() -> None:
    alice, bob = pair()
    carol = CallKeys.fresh(CALL_ID, 3)
    carol.add(alice.own_key)
    assert carol.decrypt(1, alice.encrypt(b"while carol was in")) == b"while carol was in"
    renewed = alice.renew()
    assert split_sender_key_kid(renewed.kid) == (1, 0)
    bob.add(renewed)
    later = alice.encrypt(b"after carol left")
    assert bob.decrypt(1, later) == b"after carol left"
    with pytest.raises(UnknownKeyIdError):
        carol.decrypt(1, later)


def test_receivers_keep_two_generations() -> None:
    alice, bob = pair()
    for _ in range(4):
        bob.add(alice.renew())
    kids = bob._receivers[1].kids
    assert sorted({split_sender_key_kid(k)[0] for k in kids}) == [3, 4]
    assert CALL_KEPT_GENERATIONS == 2


def test_keys_older_than_the_kept_generations_are_ignored() -> None:
    # Review finding 5: the oldest generation kept was reckoned from the key being added, not
    # from the newest held, so keys sent newest first were all kept (300 -> 300 KIDs).
    alice = CallKeys.fresh(CALL_ID, 1)
    sent = []
    for _ in range(300):
        sent.append(alice.own_key)
        alice.renew()
    bob = CallKeys.fresh(CALL_ID, 2)
    for key in reversed(sent):  # generation 299 first, 0 last
        bob.add(key)
    kids = bob._receivers[1].kids
    assert [split_sender_key_kid(k)[0] for k in kids] == [298, 299]
    with pytest.raises(UnknownKeyIdError):  # generation 0 was ignored
        bob.decrypt(1, CallKeys(CALL_ID, 1, SenderContext(sent[0].base_key, sent[0].kid))
                    .encrypt(b"old"))
    newest = alice.own_key  # generation 300: 298 goes
    bob.add(newest)
    assert [split_sender_key_kid(k)[0] for k in bob._receivers[1].kids] == [299, 300]
    assert bob.decrypt(1, alice.encrypt(b"now")) == b"now"
    bob.forget(1)  # a participant that comes back starts again from generation 0
    bob.add(sent[0])
    assert bob._receivers[1].kids == (sent[0].kid,)


def test_call_key_payload_round_trip_and_malformed_fields() -> None:
    key = CallKey(CALL_ID, 5, 0x102, bytes(range(32)))
    payload = key.to_payload(1_000, counter_random)
    assert payload.kind == "call_key"
    assert CallKey.from_payload(Payload.decode(payload.encode())) == key
    assert CallKey.from_wire(CALL_ID, key.to_wire()) == key
    for bad in ({"call": b"x"}, {"participant": 0}, {"kid": -1}, {"key": b"short"},
                {"participant": True}):
        fields = {"call": CALL_ID, "participant": 5, "kid": 1, "key": bytes(32), **bad}
        with pytest.raises(MalformedError):
            CallKey.from_payload(Payload.new("call_key", 1, counter_random, **fields))
    with pytest.raises(MalformedError):
        CallKey.from_payload(Payload.new("text", 1, counter_random, text="x"))
    for bad_wire in ([5, 1], "x", [5, 1, bytes(8)]):
        with pytest.raises(MalformedError):
            CallKey.from_wire(CALL_ID, bad_wire)
    with pytest.raises(LocalProtocolError):
        CallKeys.fresh(CALL_ID, 1).add(CallKey(CALL_ID, 1, 0, bytes(32)))

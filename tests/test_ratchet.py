import os

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from e2e_proto.constants import MAX_SKIP, MAX_SKIPPED_KEYS
from e2e_proto.errors import (
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    MalformedError,
    RemoteProtocolError,
    TooManySkippedError,
    UnsupportedVersionError,
)
from e2e_proto.keys import X25519PrivateKey
from e2e_proto.ratchet import RatchetMessage, RatchetState, decode_header, encode_header

AD = b"A" * 32 + b"B" * 32


def pair() -> tuple[RatchetState, RatchetState]:
    shared = os.urandom(32)
    spk = X25519PrivateKey.generate()
    alice = RatchetState.initialize_alice(shared, spk.public_key, X25519PrivateKey.generate())
    bob = RatchetState.initialize_bob(shared, spk)
    return alice, bob


def snapshot(state: RatchetState) -> bytes:
    return state.to_bytes()


def test_in_order_both_ways() -> None:
    alice, bob = pair()
    for turn in range(4):
        sender, receiver = (alice, bob) if turn % 2 == 0 else (bob, alice)
        for i in range(5):
            text = f"turn {turn} message {i}".encode()
            assert receiver.decrypt(sender.encrypt(text, AD), AD) == text


def test_bob_cannot_send_first() -> None:
    _, bob = pair()
    with pytest.raises(LocalProtocolError):
        bob.encrypt(b"hi", AD)


def test_out_of_order_within_and_across_chains() -> None:
    alice, bob = pair()
    first = [alice.encrypt(b"a%d" % i, AD) for i in range(4)]
    assert bob.decrypt(first[2], AD) == b"a2"
    reply = bob.encrypt(b"b0", AD)
    assert alice.decrypt(reply, AD) == b"b0"
    second = [alice.encrypt(b"c%d" % i, AD) for i in range(2)]
    assert bob.decrypt(second[1], AD) == b"c1"
    # Old chain (skipped keys 0, 1, 3) still decrypts after the DH-ratchet step.
    assert [bob.decrypt(first[i], AD) for i in (3, 0, 1)] == [b"a3", b"a0", b"a1"]
    assert bob.decrypt(second[0], AD) == b"c0"
    assert bob.skipped == {}


def test_replay_is_refused_and_state_unchanged() -> None:
    alice, bob = pair()
    messages = [alice.encrypt(b"m%d" % i, AD) for i in range(3)]
    bob.decrypt(messages[2], AD)
    bob.decrypt(messages[0], AD)
    for replay in (messages[0], messages[2]):
        before = snapshot(bob)
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(replay, AD)
        assert snapshot(bob) == before
    assert bob.decrypt(messages[1], AD) == b"m1"


def test_replay_from_an_earlier_chain_is_a_duplicate() -> None:
    alice, bob = pair()
    old = alice.encrypt(b"old", AD)
    bob.decrypt(old, AD)
    alice.decrypt(bob.encrypt(b"x", AD), AD)
    bob.decrypt(alice.encrypt(b"new", AD), AD)
    before = snapshot(bob)
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(old, AD)
    assert snapshot(bob) == before


def test_max_skip_is_enforced_without_changing_state() -> None:
    alice, bob = pair()
    bob.decrypt(alice.encrypt(b"start", AD), AD)
    for _ in range(MAX_SKIP + 1):
        alice.next_sending_key()
    too_far = alice.encrypt(b"far", AD)
    before = snapshot(bob)
    with pytest.raises(TooManySkippedError):
        bob.decrypt(too_far, AD)
    assert snapshot(bob) == before


def test_exactly_max_skip_is_allowed() -> None:
    alice, bob = pair()
    for _ in range(MAX_SKIP):
        alice.next_sending_key()
    assert bob.decrypt(alice.encrypt(b"edge", AD), AD) == b"edge"
    assert len(bob.skipped) == MAX_SKIP


def test_max_skip_across_a_dh_step_counts_the_old_chain() -> None:
    alice, bob = pair()
    bob.decrypt(alice.encrypt(b"first", AD), AD)
    alice.decrypt(bob.encrypt(b"r", AD), AD)
    for _ in range(MAX_SKIP + 5):
        bob.next_sending_key()  # Bob's chain runs far ahead; Alice never saw those
    alice_state = snapshot(alice)
    bob.decrypt(alice.encrypt(b"turn", AD), AD)
    message = bob.encrypt(b"new chain", AD)  # pn = MAX_SKIP + 6 > MAX_SKIP from alice's nr
    alice = RatchetState.from_bytes(alice_state)
    alice.next_sending_key()
    before = snapshot(alice)
    with pytest.raises(TooManySkippedError):
        alice.decrypt(message, AD)
    assert snapshot(alice) == before


def test_skipped_keys_are_capped_oldest_first() -> None:
    alice, bob = pair()
    early = alice.encrypt(b"early", AD)
    for _ in range(MAX_SKIP - 1):
        alice.next_sending_key()
    bob.decrypt(alice.encrypt(b"x", AD), AD)  # skips 0..MAX_SKIP-1 (MAX_SKIP keys)
    alice.decrypt(bob.encrypt(b"y", AD), AD)
    alice.next_sending_key()
    alice.next_sending_key()
    bob.decrypt(alice.encrypt(b"z", AD), AD)  # skips 2 more: oldest two evicted
    assert len(bob.skipped) == MAX_SKIPPED_KEYS
    with pytest.raises(DuplicateMessageError):
        bob.decrypt(early, AD)


@pytest.mark.parametrize("part", ["header", "nonce", "ciphertext"])
def test_every_flipped_byte_gives_a_typed_error(part: str) -> None:
    alice, bob = pair()
    message = alice.encrypt(b"tamper with me" * 3, AD)
    original = getattr(message, part)
    before = snapshot(bob)
    for index in range(len(original)):
        for bit in (0x01, 0x80):
            flipped = bytearray(original)
            flipped[index] ^= bit
            with pytest.raises(RemoteProtocolError):
                bob.decrypt(message._replace(**{part: bytes(flipped)}), AD)
            assert snapshot(bob) == before
    assert bob.decrypt(message, AD) == b"tamper with me" * 3


def test_wrong_associated_data_fails() -> None:
    alice, bob = pair()
    with pytest.raises(DecryptionError):
        bob.decrypt(alice.encrypt(b"m", AD), AD[::-1])


@pytest.mark.parametrize("header", [
    b"", b"\xc1", encode_header(b"x" * 31, 0, 0), encode_header(b"x" * 32, -1, 0),
    encode_header(b"x" * 32, 0, 2**32), b"\x92\xc4\x20" + b"x" * 32 + b"\x00",
])
def test_malformed_headers(header: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_header(header)


def test_state_round_trip_mid_conversation() -> None:
    alice, bob = pair()
    messages = [alice.encrypt(b"m%d" % i, AD) for i in range(4)]
    bob.decrypt(messages[3], AD)
    bob = RatchetState.from_bytes(bob.to_bytes())
    assert bob.to_bytes() == RatchetState.from_bytes(bob.to_bytes()).to_bytes()
    assert [bob.decrypt(messages[i], AD) for i in range(3)] == [b"m0", b"m1", b"m2"]
    assert alice.decrypt(bob.encrypt(b"r", AD), AD) == b"r"


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x90", b"\x91\x01", b"\x92\x02\x00"])
def test_bad_state_bytes(data: bytes) -> None:
    with pytest.raises((MalformedError, UnsupportedVersionError)):
        RatchetState.from_bytes(data)


def test_unknown_state_version() -> None:
    alice, _ = pair()
    data = bytearray(alice.to_bytes())
    assert data[1] == 1
    data[1] = 2
    with pytest.raises(UnsupportedVersionError):
        RatchetState.from_bytes(bytes(data))


class RatchetDelivery(RuleBasedStateMachine):
    """Random sends, deliveries in any order, drops, duplicates and state reloads.

    Invariants: every message decrypts exactly once to what was sent; a second delivery is
    refused with a typed error; a failed decryption leaves the state byte-for-byte unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        alice, bob = pair()
        self.states = {"alice": alice, "bob": bob}
        self.in_flight: list[tuple[str, RatchetMessage, bytes]] = []
        self.delivered: list[tuple[str, RatchetMessage]] = []
        self.bob_has_received = False
        self.counter = 0

    @rule(sender=st.sampled_from(["alice", "bob"]), count=st.integers(1, 4))
    def send(self, sender: str, count: int) -> None:
        if sender == "bob" and not self.bob_has_received:
            return
        for _ in range(count):
            text = f"{sender} {self.counter}".encode()
            self.counter += 1
            self.in_flight.append((sender, self.states[sender].encrypt(text, AD), text))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        sender, message, text = self.in_flight.pop(index)
        receiver = "bob" if sender == "alice" else "alice"
        assert self.states[receiver].decrypt(message, AD) == text
        self.delivered.append((receiver, message))
        self.bob_has_received |= receiver == "bob"

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        receiver, message = data.draw(st.sampled_from(self.delivered))
        state = self.states[receiver]
        before = state.to_bytes()
        with pytest.raises(RemoteProtocolError):
            state.decrypt(message, AD)
        assert state.to_bytes() == before

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def tamper(self, data: st.DataObject) -> None:
        sender, message, _ = data.draw(st.sampled_from(self.in_flight))
        receiver = "bob" if sender == "alice" else "alice"
        ciphertext = bytearray(message.ciphertext)
        ciphertext[data.draw(st.integers(0, len(ciphertext) - 1))] ^= 0x20
        state = self.states[receiver]
        before = state.to_bytes()
        with pytest.raises(RemoteProtocolError):
            state.decrypt(message._replace(ciphertext=bytes(ciphertext)), AD)
        assert state.to_bytes() == before

    @rule(party=st.sampled_from(["alice", "bob"]))
    def reload(self, party: str) -> None:
        self.states[party] = RatchetState.from_bytes(self.states[party].to_bytes())

    @invariant()
    def skipped_keys_bounded(self) -> None:
        for state in self.states.values():
            assert len(state.skipped) <= MAX_SKIPPED_KEYS


RatchetDelivery.TestCase.settings = settings(max_examples=60, stateful_step_count=40,
                                             deadline=None)
TestRatchetDelivery = RatchetDelivery.TestCase

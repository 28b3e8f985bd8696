"""A walk-through of the protocol core: X3DH, then a Double Ratchet conversation.

``python -m e2e_proto.demo`` prints each step: Bob publishes a prekey bundle, Alice verifies it
and runs X3DH, then they exchange a dozen messages each way, some delivered out of order, one
replayed (and refused), with several DH-ratchet turns. Everything is in memory.
"""

from __future__ import annotations

import random as stdlib_random
import sys
from collections.abc import Callable

from .address import Address
from .errors import DuplicateMessageError
from .fingerprint import format_safety_number, safety_number
from .keys import IdentityKeyPair, OneTimePreKey, PreKeyBundle, SignedPreKey, X25519PrivateKey
from .payload import Payload
from .session import SessionCipher, process_prekey_bundle
from .stores import MemoryProtocolStore
from .wire import Envelope

ALICE = Address("alice", 0)
BOB = Address("bob", 0)


def _short(data: bytes) -> str:
    return data[:6].hex() + "…"


def run(out: Callable[[str], None] = print) -> int:
    """Run the demo, printing with ``out``; returns the number of messages delivered."""
    alice_store = MemoryProtocolStore(IdentityKeyPair.generate())
    bob_identity = IdentityKeyPair.generate()
    bob_store = MemoryProtocolStore(bob_identity)

    out("1. Bob creates a signed prekey and 3 one-time prekeys and publishes a bundle")
    spk = SignedPreKey.create(bob_identity, 1, X25519PrivateKey.generate())
    bob_store.store_signed_prekey(spk)
    opks = [OneTimePreKey(i, X25519PrivateKey.generate()) for i in range(1, 4)]
    bob_store.store_one_time_prekeys(opks)
    bundle = PreKeyBundle(bob_identity.public_key, spk.key_id, spk.public_key, spk.signature,
                          opks[0].key_id, opks[0].public_key)
    out(f"   bob's identity {_short(bob_identity.public_key.raw)}  spk #1 "
        f"{_short(spk.public_key.raw)}  opk #1 {_short(opks[0].public_key.raw)}")

    out("2. Alice verifies the SPK signature and runs X3DH (DH1..DH4 -> HKDF -> SK)")
    process_prekey_bundle(alice_store, BOB, bundle)
    alice, bob = SessionCipher(alice_store, ALICE), SessionCipher(bob_store, BOB)

    ciphers = {"alice": alice, "bob": bob}
    peers = {"alice": BOB, "bob": ALICE}
    in_flight: dict[int, tuple[str, bytes]] = {}
    delivered = 0

    def send(sender: str, number: int) -> None:
        payload = Payload.new("text", 1_700_000_000_000 + number, text=f"message {number}")
        envelope = ciphers[sender].encrypt(peers[sender], payload.encode())
        wire = envelope.encode()
        in_flight[number] = (sender, wire)
        out(f"   {sender:>5} sends #{number:<2} {envelope.type:<7} {len(wire):>3} bytes "
            f"header {_short(envelope.message.header)}")

    def deliver(number: int) -> None:
        nonlocal delivered
        sender, wire = in_flight[number]
        receiver = "bob" if sender == "alice" else "alice"
        payload = Payload.decode(ciphers[receiver].decrypt(Envelope.decode(wire)))
        delivered += 1
        out(f"   {receiver:>5} reads #{number:<2} {payload.fields['text']!r}")

    out("3. Alice sends 3 messages before Bob answers (each a prekey message)")
    for number in range(3):
        send("alice", number)
    out("4. Bob receives them out of order: #2, #0, #1 (skipped keys are kept and used)")
    for number in (2, 0, 1):
        deliver(number)
    out("5. A replay of #1 is refused and changes nothing")
    try:
        bob.decrypt(Envelope.decode(in_flight[1][1]))
    except DuplicateMessageError as exc:
        out(f"   refused: {type(exc).__name__}: {exc}")

    out("6. Twenty-one more messages, alternating turns (a DH-ratchet step at each turn), "
        "shuffled within each turn")
    shuffle = stdlib_random.Random(7).shuffle
    number = 3
    for turn in range(7):
        sender = "bob" if turn % 2 == 0 else "alice"
        batch = list(range(number, number + 3))
        for n in batch:
            send(sender, n)
        shuffle(batch)
        for n in batch:
            deliver(n)
        number += 3

    out("7. Both sides compute the same safety number")
    number_text = safety_number("alice", alice_store.identity_key_pair().public_key,
                                "bob", bob_identity.public_key)
    out(f"   {format_safety_number(number_text)}")
    counts = {name: sum(1 for s, _ in in_flight.values() if s == name) for name in ciphers}
    out(f"done: {delivered} messages delivered ({counts['alice']} from alice, "
        f"{counts['bob']} from bob), one replay refused")
    return delivered


def main() -> int:
    """Entry point for ``python -m e2e_proto.demo``."""
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

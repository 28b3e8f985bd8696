"""``python -m benchmarks.breakdown``: where a round trip and a ping-pong message spend time.

Times each part of the hot path on its own (interleaved, medians, GC off, as the main
benchmark): the AEAD, the chain step, the nonce, the header codec, KDF_RK, the X25519 calls,
the ratchet alone and the whole session round trip. The parts that e2e_proto computes in
Python (HMAC, HKDF, header) are named apart from the libsodium calls, and what is left over
is the cost of the Python code that ties them together.

    python -m benchmarks.breakdown [--quick]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import nacl.bindings as sodium
import nacl.utils

from e2e_proto import primitives
from e2e_proto.constants import CHAIN_KEY_SEED, MESSAGE_KEY_SEED, NONCE_SIZE, RATCHET_INFO
from e2e_proto.ratchet import RatchetMessage, decode_header, encode_header

from .crypto import PINGPONG_SIZE, Case, Device, _ping_pong, established, payload
from .timing import Stat, run_interleaved

SIZE = 1024


def parts() -> dict[str, Case]:
    """One callable per part, plus the ratchet-only and session round trips and ping-pong."""
    seal, open_ = (sodium.crypto_aead_xchacha20poly1305_ietf_encrypt,
                   sodium.crypto_aead_xchacha20poly1305_ietf_decrypt)
    key, nonce, data = nacl.utils.random(32), nacl.utils.random(24), payload(SIZE)
    alice, bob = Device("alice"), Device("bob")
    established(alice, bob)
    a_record = alice.store.load_session(bob.address)
    b_record = bob.store.load_session(alice.address)
    assert a_record is not None and b_record is not None
    aad = a_record.associated_data
    header = encode_header(nacl.utils.random(32), 3, 1000)
    ciphertext = seal(data, aad + header, nonce, key)
    private, public = nacl.utils.random(32), sodium.crypto_scalarmult_base(nacl.utils.random(32))
    a_ratchet, b_ratchet = a_record.ratchet, b_record.ratchet

    def ratchet_round_trip() -> bytes:
        message: RatchetMessage = a_ratchet.encrypt(data, aad)
        return b_ratchet.decrypt(message, aad)

    carol, dave = Device("carol"), Device("dave")
    established(carol, dave)
    return {
        "seal + open (libsodium)": lambda: open_(seal(data, aad + header, nonce, key),
                                                 aad + header, nonce, key),
        "seal (libsodium)": lambda: seal(data, aad + header, nonce, key),
        "open (libsodium)": lambda: open_(ciphertext, aad + header, nonce, key),
        "chain step (2 HMAC-SHA256, Python)": lambda: primitives.hmac_sha256_pair(
            key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED),
        "nonce (24 random bytes)": lambda: primitives.system_random(NONCE_SIZE),
        "header encode + decode (msgpack)": lambda: decode_header(encode_header(key, 3, 1000)),
        "KDF_RK (HKDF-SHA256, 64 B, Python)": lambda: primitives.hkdf_sha256(
            key, key, RATCHET_INFO, 64),
        "X25519 (libsodium)": lambda: sodium.crypto_scalarmult(private, public),
        "X25519 key pair (libsodium)": lambda: sodium.crypto_scalarmult_base(private),
        "ratchet round trip (RatchetState only)": ratchet_round_trip,
        "session round trip (SessionCipher)": lambda: bob.cipher.decrypt(
            alice.cipher.encrypt(bob.address, data)),
        "ping-pong message (SessionCipher)": _ping_pong(
            lambda m: dave.cipher.decrypt(carol.cipher.encrypt(dave.address, m)),
            lambda m: carol.cipher.decrypt(dave.cipher.encrypt(carol.address, m)),
            payload(PINGPONG_SIZE)),
    }


def attribution(stats: dict[str, Stat]) -> list[tuple[str, float]]:
    """(line, microseconds): each whole operation as the sum of its parts, and the rest."""
    us = {name: stat.median * 1e6 for name, stat in stats.items()}
    aead = us["seal + open (libsodium)"]
    steps, nonce, header = (2 * us["chain step (2 HMAC-SHA256, Python)"],
                            us["nonce (24 random bytes)"], us["header encode + decode (msgpack)"])
    known = aead + steps + nonce + header
    ratchet, session = (us["ratchet round trip (RatchetState only)"],
                        us["session round trip (SessionCipher)"])
    dh_turn = (2 * us["X25519 (libsodium)"] + us["X25519 key pair (libsodium)"]
               + 2 * us["KDF_RK (HKDF-SHA256, 64 B, Python)"])
    ping_pong = us["ping-pong message (SessionCipher)"]
    return [
        ("round trip: seal + open", aead),
        ("round trip: two chain steps", steps),
        ("round trip: nonce + header codec", nonce + header),
        ("round trip: the rest of the ratchet (Python)", ratchet - known),
        ("round trip: the session layer (Python)", session - ratchet),
        ("round trip: total", session),
        ("ping-pong: a round trip", session),
        ("ping-pong: key pair + 2 X25519 + 2 KDF_RK", dh_turn),
        ("ping-pong: the rest of the DH-ratchet step (Python)", ping_pong - session - dh_turn),
        ("ping-pong: total", ping_pong),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Time the parts and print them, then the attribution."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown",
                                     description="Where a round trip and a ping-pong "
                                     "message spend time, part by part.")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    args = parser.parse_args(argv)
    samples, sample_time = (9, 0.004) if args.quick else (41, 0.02)
    stats = run_interleaved(parts(), samples, sample_time)
    width = max(len(name) for name in stats) + 2
    print(f"median per operation, {samples} interleaved samples, GC off ({SIZE} B payloads)")
    for name, stat in stats.items():
        print(f"{name:<{width}}{stat.median * 1e6:8.2f} µs")
    print()
    for line, value in attribution(stats):
        print(f"{line:<{width + 10}}{value:8.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

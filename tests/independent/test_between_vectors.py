"""Re-derive ``between.json`` from docs/PROTOCOL.md §19 alone, with pyca/cryptography,
pycryptodome and the standard library.

Nothing here imports :mod:`e2e_proto` or PyNaCl: link statements, revocations, shared records
and cross device lists are built from their listed fields in the documented order and signed
with pyca's Ed25519; the server-to-server handshake's MACs are the standard library's
HMAC-SHA256, its keys pyca's HKDF-SHA256, and its frames pycryptodome's XChaCha20-Poly1305 (its
ChaCha20-Poly1305 with a 24-byte nonce).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from Crypto.Cipher import ChaCha20_Poly1305
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LINK_PRIVATE_PREFIX = b"e2e-proto/account-link/private/v1"
LINK_SOCIAL_PREFIX = b"e2e-proto/account-link/social/v1"
UNLINK_PREFIX = b"e2e-proto/account-unlink/v1"
CROSS_LIST_PREFIX = b"e2e-proto/cross-device-list/v1"
CROSS_LINK_PREFIX = b"e2e-proto/cross-device-link/v1"
HELLO_PREFIX = b"e2e-proto/peer-hello/v1"
WELCOME_PREFIX = b"e2e-proto/peer-welcome/v1"
SESSION_INFO = b"e2e-proto/peer-session/v1"
DATA = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "between.json")
                  .read_text(encoding="utf-8"))


def _key(seed_hex: str) -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def test_file_header() -> None:
    assert DATA["protocol"] == "E2EProto Between v1"
    assert all(len(DATA[name]) >= 2 for name in (
        "link_statements", "shared_records", "cross_device_lists", "peer_handshakes"))


@pytest.mark.parametrize("case", DATA["link_statements"], ids=lambda c: c["private_account"][:8])
def test_link_statements_and_revocations(case: dict[str, Any]) -> None:
    aik, aik_public = _key(case["private_aik_seed"])
    social, social_public = _key(case["social_device_seed"])
    assert (aik_public.hex(), social_public.hex()) == (case["private_aik_public"],
                                                       case["social_device_public"])
    body = _pack([1, case["private_account"], aik_public, case["social_account"],
                  case["social_device"], social_public, bytes.fromhex(case["link_id"]),
                  case["issued_ms"]])
    assert body.hex() == case["body"]
    assert (LINK_PRIVATE_PREFIX + body).hex() == case["private_signed_bytes"]
    assert aik.sign(LINK_PRIVATE_PREFIX + body).hex() == case["private_signature"]
    assert (LINK_SOCIAL_PREFIX + body).hex() == case["social_signed_bytes"]
    assert social.sign(LINK_SOCIAL_PREFIX + body).hex() == case["social_signature"]
    signers = {"private": aik, "social": social}
    for revocation in case["revocations"]:
        revoked = _pack([1, bytes.fromhex(case["link_id"]), revocation["revoked_ms"],
                         revocation["side"]])
        assert revoked.hex() == revocation["body"]
        assert (UNLINK_PREFIX + revoked).hex() == revocation["signed_bytes"]
        assert (signers[revocation["side"]].sign(UNLINK_PREFIX + revoked).hex()
                == revocation["signature"])


@pytest.mark.parametrize("case", DATA["shared_records"], ids=lambda c: c["display_name"][:8])
def test_shared_records(case: dict[str, Any]) -> None:
    encoded = _pack([1, [case["private_account"], case["linked_ms"]],
                     [case["display_name"], case["about"]], case["statuses"], case["devices"]])
    assert encoded.hex() == case["encoded"]


@pytest.mark.parametrize("case", DATA["cross_device_lists"], ids=lambda c: c["account"])
def test_cross_device_lists(case: dict[str, Any]) -> None:
    identity, public = _key(case["identity_seed"])
    assert public.hex() == case["identity_public"]
    devices = [(d["device_id"], *_key(d["dik_seed"])) for d in case["devices"]]
    assert [d["dik_public"] for d in case["devices"]] == [p.hex() for _, _, p in devices]
    signed = CROSS_LIST_PREFIX + _pack([case["account"], case["version"],
                                        [[i, p] for i, _, p in devices]])
    assert signed.hex() == case["signed_bytes"]
    assert identity.sign(signed).hex() == case["signature"]
    link = CROSS_LINK_PREFIX + public + case["account"].encode()
    assert [{"device_id": i, "signature": key.sign(link).hex()} for i, key, _ in devices] == (
        case["link_signatures"])


@pytest.mark.parametrize("case", DATA["peer_handshakes"], ids=lambda c: c["connector"])
def test_peer_handshakes_and_sealed_frames(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key"])
    acceptor_nonce, connector_nonce = (bytes.fromhex(case["acceptor_nonce"]),
                                       bytes.fromhex(case["connector_nonce"]))
    transcript = _pack([case["connector"], case["acceptor"], acceptor_nonce, connector_nonce])
    assert transcript.hex() == case["transcript"]
    assert hmac.new(key, HELLO_PREFIX + transcript, hashlib.sha256).hexdigest() == case["hello"]
    assert (hmac.new(key, WELCOME_PREFIX + transcript, hashlib.sha256).hexdigest()
            == case["welcome"])
    keys = HKDF(hashes.SHA256(), 64, acceptor_nonce + connector_nonce,
                SESSION_INFO + transcript).derive(key)
    assert (keys[:32].hex(), keys[32:].hex()) == (case["connector_key"], case["acceptor_key"])
    numbers = {"connector": 0, "acceptor": 0}
    for frame in case["frames"]:
        direction = frame["from"]
        cipher = ChaCha20_Poly1305.new(
            key=keys[:32] if direction == "connector" else keys[32:],
            nonce=numbers[direction].to_bytes(24, "big"))
        numbers[direction] += 1
        sealed, tag = cipher.encrypt_and_digest(bytes.fromhex(frame["plaintext"]))
        assert (sealed + tag).hex() == frame["ciphertext"]

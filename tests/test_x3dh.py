import pytest

from e2e_proto.errors import InvalidKeyError, InvalidSignatureError
from e2e_proto.keys import (
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
    X25519PublicKey,
    signed_prekey_message,
)
from e2e_proto.x3dh import initiate, respond

# A point of order 8 on Curve25519 (RFC 7748 §6.1 / Wycheproof low-order list): X25519 with it
# gives all zeros for every scalar.
LOW_ORDER_POINT = bytes.fromhex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def _parties(with_opk: bool) -> tuple:
    alice, bob = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    spk = SignedPreKey.create(bob, 9, X25519PrivateKey.generate())
    opk = OneTimePreKey(3, X25519PrivateKey.generate()) if with_opk else None
    bundle = PreKeyBundle(bob.public_key, 9, spk.public_key, spk.signature,
                          opk.key_id if opk else None, opk.public_key if opk else None)
    return alice, bob, spk, opk, bundle


@pytest.mark.parametrize("with_opk", [True, False])
def test_both_sides_agree(with_opk: bool) -> None:
    alice, bob, spk, opk, bundle = _parties(with_opk)
    ephemeral = X25519PrivateKey.generate()
    sent = initiate(alice, bundle, ephemeral)
    received = respond(bob, alice.public_key, ephemeral.public_key, spk, opk)
    assert sent == received
    assert (sent.dh4 is not None) == with_opk
    assert sent.associated_data == alice.public_key.raw + bob.public_key.raw
    assert len(sent.shared_secret) == 32


def test_opk_changes_the_secret() -> None:
    alice, bob, spk, opk, bundle = _parties(True)
    ephemeral = X25519PrivateKey.generate()
    without = PreKeyBundle(bundle.identity_key, 9, bundle.signed_prekey,
                           bundle.signed_prekey_signature)
    assert initiate(alice, bundle, ephemeral).shared_secret != initiate(
        alice, without, ephemeral).shared_secret


def test_bad_spk_signature_is_refused() -> None:
    alice, _, _, _, bundle = _parties(True)
    signature = bytes([bundle.signed_prekey_signature[0] ^ 1]) + bundle.signed_prekey_signature[1:]
    forged = PreKeyBundle(bundle.identity_key, bundle.signed_prekey_id, bundle.signed_prekey,
                          signature, bundle.one_time_prekey_id, bundle.one_time_prekey)
    with pytest.raises(InvalidSignatureError):
        initiate(alice, forged, X25519PrivateKey.generate())


def test_spk_signed_by_another_key_is_refused() -> None:
    alice, _, spk, _, bundle = _parties(False)
    mallory = IdentityKeyPair.generate()
    resigned = SignedPreKey.create(mallory, 9, spk.private_key)
    forged = PreKeyBundle(bundle.identity_key, 9, spk.public_key, resigned.signature)
    with pytest.raises(InvalidSignatureError):
        initiate(alice, forged, X25519PrivateKey.generate())


def test_spk_id_is_covered_by_the_signature() -> None:
    alice, _, _, _, bundle = _parties(False)
    moved = PreKeyBundle(bundle.identity_key, 10, bundle.signed_prekey,
                         bundle.signed_prekey_signature)
    with pytest.raises(InvalidSignatureError):
        initiate(alice, moved, X25519PrivateKey.generate())


def test_all_zero_dh_is_refused() -> None:
    alice, bob = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    low = X25519PublicKey(LOW_ORDER_POINT)
    # A correctly signed low-order SPK: the signature passes, the DH must not.
    signature = bob.sign(signed_prekey_message(1, low))
    bundle = PreKeyBundle(bob.public_key, 1, low, signature)
    with pytest.raises(InvalidKeyError):
        initiate(alice, bundle, X25519PrivateKey.generate())


def test_responder_refuses_low_order_ephemeral() -> None:
    alice, bob, spk, opk, _ = _parties(True)
    with pytest.raises(InvalidKeyError):
        respond(bob, alice.public_key, X25519PublicKey(LOW_ORDER_POINT), spk, opk)

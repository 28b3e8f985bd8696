"""Figures of the encryption hot path: the libsodium floor, ours and the peers.

Each ``*_cases`` function builds ready-to-run zero-argument callables, one operation each, keyed
by a figure name ``group/operation[/size]``. Set-up (keys, sessions) happens here, outside the
timed calls; the callables keep their sessions in steady state.
"""

from __future__ import annotations

import hmac
import importlib.util
from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium
import nacl.utils

from e2e_proto.address import Address
from e2e_proto.keys import (
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
)
from e2e_proto.session import SessionCipher, process_prekey_bundle
from e2e_proto.stores import MemoryProtocolStore
from e2e_proto.wire import Envelope

Case = Callable[[], object]
SIZES = (100, 1024, 65536)
FANOUT_DEVICES = 5
FANOUT_SIZE = 1024
PINGPONG_SIZE = 1024
FIRST_MESSAGE_SIZE = 100


def payload(size: int) -> bytes:
    """An ASCII payload of ``size`` bytes (python-olm decrypts to str, so keep it text)."""
    return (b"e2e-proto benchmark " * (size // 20 + 1))[:size]


def peers_available() -> dict[str, bool]:
    """Which peer packages (extra ``bench``) are importable."""
    return {
        "vodozemac": importlib.util.find_spec("vodozemac") is not None,
        "python-olm": importlib.util.find_spec("olm") is not None,
        "syndace": (importlib.util.find_spec("doubleratchet") is not None
                    and importlib.util.find_spec("x3dh") is not None),
    }


# -- the floor: raw libsodium and OpenSSL calls -------------------------------------------------


def floor_cases(sizes: tuple[int, ...] = SIZES) -> dict[str, Case]:
    """Raw nacl.bindings XChaCha20-Poly1305 seal+open, X25519, Ed25519 sign/verify, HMAC."""
    seal = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt
    open_ = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt
    key, nonce, aad = nacl.utils.random(32), nacl.utils.random(24), bytes(64)
    cases: dict[str, Case] = {}
    for size in sizes:
        data = payload(size)
        cases[f"floor/seal+open/{size}"] = (
            lambda data=data: open_(seal(data, aad, nonce, key), aad, nonce, key))
    private, public = nacl.utils.random(32), sodium.crypto_scalarmult_base(nacl.utils.random(32))
    cases["floor/x25519"] = lambda: sodium.crypto_scalarmult(private, public)
    pk, sk = sodium.crypto_sign_seed_keypair(nacl.utils.random(32))
    message = bytes(52)
    signature = sodium.crypto_sign(message, sk)[:64]
    cases["floor/ed25519-sign"] = lambda: sodium.crypto_sign(message, sk)
    cases["floor/ed25519-verify"] = lambda: sodium.crypto_sign_open(signature + message, pk)
    chain_key = nacl.utils.random(32)
    cases["floor/hmac-sha256"] = lambda: hmac.digest(chain_key, b"\x01", "sha256")
    cases["floor/x25519-keygen"] = lambda: sodium.crypto_scalarmult_base(private)
    cases.update(_required_calls(seal, open_, key, nonce, aad, private, public, pk, signature,
                                 message))
    return cases


def _required_calls(seal: Callable[..., bytes], open_: Callable[..., bytes], key: bytes,
                    nonce: bytes, aad: bytes, private: bytes, public: bytes, pk: bytes,
                    signature: bytes, message: bytes) -> dict[str, Case]:
    """Only the libsodium calls DESIGN requires for a ping-pong message and for a set-up.

    Ping-pong (DESIGN §4): one new ratchet key pair, two X25519s (one per side) and the AEAD.
    Set-up (§3, §4, with a one-time prekey): the bundle's signature check, three key pairs
    (ephemeral, Alice's ratchet key, Bob's first ratchet key), eleven X25519s (X3DH's four on
    each side, Alice's first chain, Bob's receiving and sending chains) and the AEAD of the
    first message: the calls e2e_proto makes, following the spec's ratchet initialisation
    (deferring Bob's new key pair and its X25519 to his first send, as Olm does, would save
    one of each). They bound what an implementation of this protocol on PyNaCl can reach.
    """
    scalarmult, keygen, verify = (sodium.crypto_scalarmult, sodium.crypto_scalarmult_base,
                                  sodium.crypto_sign_open)
    ping_data, first = payload(PINGPONG_SIZE), payload(FIRST_MESSAGE_SIZE)

    def ping_pong_calls() -> bytes:
        keygen(private)
        scalarmult(private, public)
        scalarmult(private, public)
        return open_(seal(ping_data, aad, nonce, key), aad, nonce, key)

    def establish_calls() -> bytes:
        verify(signature + message, pk)
        for _ in range(3):
            keygen(private)
        for _ in range(11):
            scalarmult(private, public)
        return open_(seal(first, aad, nonce, key), aad, nonce, key)

    return {f"floor/ping-pong/{PINGPONG_SIZE}": ping_pong_calls,
            "floor/establish": establish_calls}


# -- ours -----------------------------------------------------------------------------------------


class Device:
    """A device with a memory store, a session cipher, a signed prekey and one reusable OPK."""

    def __init__(self, account: str, device_id: int = 0) -> None:
        self.identity = IdentityKeyPair.generate()
        self.store = MemoryProtocolStore(self.identity)
        self.address = Address(account, device_id)
        self.cipher = SessionCipher(self.store, self.address)
        self.signed_prekey = SignedPreKey.create(self.identity, 1, X25519PrivateKey.generate())
        self.store.store_signed_prekey(self.signed_prekey)
        self.one_time_prekey = OneTimePreKey(100, X25519PrivateKey.generate())
        self.store.store_one_time_prekeys([self.one_time_prekey])

    def bundle(self) -> PreKeyBundle:
        """The bundle the relay would hand out, with the OPK."""
        spk, opk = self.signed_prekey, self.one_time_prekey
        return PreKeyBundle(self.identity.public_key, spk.key_id, spk.public_key, spk.signature,
                            opk.key_id, opk.public_key)

    def restock(self) -> None:
        """Put the OPK back (a session set-up deletes it), so set-up can be repeated."""
        self.store.store_one_time_prekeys([self.one_time_prekey])


def established(alice: Device, bob: Device) -> None:
    """A session Alice -> Bob, answered once by Bob, so both sides are past the prekey stage."""
    process_prekey_bundle(alice.store, bob.address, bob.bundle())
    bob.cipher.decrypt(alice.cipher.encrypt(bob.address, b"hello"))
    alice.cipher.decrypt(bob.cipher.encrypt(alice.address, b"hello back"))


def ours_cases(sizes: tuple[int, ...] = SIZES) -> dict[str, Case]:
    """Round trip, ping-pong, session set-up, fan-out and envelope codec of e2e_proto."""
    cases: dict[str, Case] = {}
    alice, bob = Device("alice"), Device("bob")
    established(alice, bob)
    a_enc, b_dec, bob_address = alice.cipher.encrypt, bob.cipher.decrypt, bob.address
    for size in sizes:
        data = payload(size)
        cases[f"ours/round-trip/{size}"] = (
            lambda data=data: b_dec(a_enc(bob_address, data)))
    cases[f"ours/ping-pong/{PINGPONG_SIZE}"] = _ping_pong(
        lambda m: bob.cipher.decrypt(alice.cipher.encrypt(bob.address, m)),
        lambda m: alice.cipher.decrypt(bob.cipher.encrypt(alice.address, m)),
        payload(PINGPONG_SIZE))

    first = payload(FIRST_MESSAGE_SIZE)
    carol, dave = Device("carol"), Device("dave")

    def establish() -> bytes:
        process_prekey_bundle(carol.store, dave.address, dave.bundle())
        plaintext = dave.cipher.decrypt(carol.cipher.encrypt(dave.address, first))
        dave.restock()
        return plaintext

    cases["ours/establish"] = establish

    sender = Device("erin")
    targets = [Device("frank", i) for i in range(FANOUT_DEVICES)]
    for target in targets:
        established(sender, target)
    addresses = [t.address for t in targets]
    fan_data = payload(FANOUT_SIZE)
    encrypt = sender.cipher.encrypt
    cases[f"ours/fan-out-{FANOUT_DEVICES}/{FANOUT_SIZE}"] = (
        lambda: [encrypt(address, fan_data) for address in addresses])
    # Keep the receivers from seeing a gap: not needed, they never decrypt these.

    envelope = alice.cipher.encrypt(bob.address, payload(1024))
    cases["ours/envelope-codec/1024"] = lambda: Envelope.decode(envelope.encode())
    return cases


def _ping_pong(a_to_b: Callable[[bytes], bytes], b_to_a: Callable[[bytes], bytes],
               data: bytes) -> Case:
    """One message per call, alternating direction, so every message is a DH-ratchet step."""
    turn = [0]

    def step() -> bytes:
        turn[0] ^= 1
        return a_to_b(data) if turn[0] else b_to_a(data)

    return step


def ours_session_size() -> dict[str, int]:
    """Serialised session record sizes in bytes (after a few messages each way)."""
    alice, bob = Device("alice"), Device("bob")
    established(alice, bob)
    for _ in range(3):
        bob.cipher.decrypt(alice.cipher.encrypt(bob.address, b"x"))
        alice.cipher.decrypt(bob.cipher.encrypt(alice.address, b"y"))
    record = alice.store.load_session(bob.address)
    assert record is not None
    return {"ours/session-size": len(record.to_bytes())}


def _fan_out_case(peer: str, sessions: list[Any]) -> dict[str, Case]:
    """A peer's fan-out: one 1 KiB message encrypted by each of its pairwise sessions."""
    data = payload(FANOUT_SIZE)
    return {f"{peer}/fan-out-{FANOUT_DEVICES}/{FANOUT_SIZE}":
            lambda: [session.encrypt(data) for session in sessions]}


def _group_cases(peer: str, outbound: Any, inbound: Any, sizes: tuple[int, ...]
                 ) -> dict[str, Case]:
    """A Megolm round trip per size: the outbound group session encrypts, the inbound decrypts."""
    cases: dict[str, Case] = {}
    for size in sizes:
        data = payload(size)
        cases[f"{peer}/round-trip/{size}"] = (
            lambda data=data: inbound.decrypt(outbound.encrypt(data)))
    return cases


# -- vodozemac (Rust Olm and Megolm) --------------------------------------------------------------


def vodozemac_cases(sizes: tuple[int, ...] = SIZES) -> tuple[dict[str, Case], dict[str, int]]:
    """vodozemac Olm round trip, ping-pong, set-up, fan-out; Megolm round trip; pickle size."""
    import vodozemac as v

    def pair() -> tuple[object, object, object, object]:
        a, b = v.Account(), v.Account()
        b.generate_one_time_keys(1)
        otk = next(iter(b.one_time_keys.values()))
        sa = a.create_outbound_session(b.curve25519_key, otk)
        sb, _ = b.create_inbound_session(a.curve25519_key, sa.encrypt(b"hello").to_pre_key())
        b.mark_keys_as_published()
        sa.decrypt(sb.encrypt(b"hello back"))
        return a, b, sa, sb

    cases: dict[str, Case] = {}
    _, _, sa, sb = pair()
    for size in sizes:
        data = payload(size)
        cases[f"vodozemac/round-trip/{size}"] = (
            lambda data=data: sb.decrypt(sa.encrypt(data)))
    cases[f"vodozemac/ping-pong/{PINGPONG_SIZE}"] = _ping_pong(
        lambda m: sb.decrypt(sa.encrypt(m)), lambda m: sa.decrypt(sb.encrypt(m)),
        payload(PINGPONG_SIZE))

    a, b = v.Account(), v.Account()
    b.generate_fallback_key()  # reusable: one key serves every repetition, like our restocked OPK
    fallback = next(iter(b.fallback_key.values()))
    b_key, a_key = b.curve25519_key, a.curve25519_key
    first = payload(FIRST_MESSAGE_SIZE)

    def establish() -> bytes:
        session = a.create_outbound_session(b_key, fallback)
        _, plaintext = b.create_inbound_session(a_key, session.encrypt(first).to_pre_key())
        return plaintext

    cases["vodozemac/establish"] = establish

    cases |= _fan_out_case("vodozemac", [pair()[2] for _ in range(FANOUT_DEVICES)])
    group = v.GroupSession()
    cases |= _group_cases("vodozemac-megolm", group, v.InboundGroupSession(group.session_key),
                          sizes)
    sizes_out = {"vodozemac/session-size": len(sa.pickle(bytes(32)))}
    return cases, sizes_out


# -- python-olm (C libolm) ------------------------------------------------------------------------


def olm_cases(sizes: tuple[int, ...] = SIZES) -> tuple[dict[str, Case], dict[str, int]]:
    """python-olm round trip, ping-pong, set-up, fan-out; Megolm round trip; pickle size."""
    import olm

    def pair() -> tuple[object, object]:
        a, b = olm.Account(), olm.Account()
        b.generate_one_time_keys(1)
        otk = next(iter(b.one_time_keys["curve25519"].values()))
        sa = olm.OutboundSession(a, b.identity_keys["curve25519"], otk)
        message = sa.encrypt("hello")
        sb = olm.InboundSession(b, message, a.identity_keys["curve25519"])
        sb.decrypt(message)
        sa.decrypt(sb.encrypt("hello back"))
        return sa, sb

    cases: dict[str, Case] = {}
    sa, sb = pair()
    for size in sizes:
        data = payload(size)
        cases[f"python-olm/round-trip/{size}"] = lambda data=data: sb.decrypt(sa.encrypt(data))
    cases[f"python-olm/ping-pong/{PINGPONG_SIZE}"] = _ping_pong(
        lambda m: sb.decrypt(sa.encrypt(m)), lambda m: sa.decrypt(sb.encrypt(m)),
        payload(PINGPONG_SIZE))

    a, b = olm.Account(), olm.Account()
    b.generate_one_time_keys(1)
    otk = next(iter(b.one_time_keys["curve25519"].values()))
    b_key, a_key = b.identity_keys["curve25519"], a.identity_keys["curve25519"]
    first = payload(FIRST_MESSAGE_SIZE)

    def establish() -> str:
        # libolm keeps the one-time key until remove_one_time_keys: it can be reused here.
        message = olm.OutboundSession(a, b_key, otk).encrypt(first)
        return olm.InboundSession(b, message, a_key).decrypt(message)

    cases["python-olm/establish"] = establish

    cases |= _fan_out_case("python-olm", [pair()[0] for _ in range(FANOUT_DEVICES)])
    group = olm.OutboundGroupSession()
    cases |= _group_cases("python-olm-megolm", group,
                          olm.InboundGroupSession(group.session_key), sizes)
    return cases, {"python-olm/session-size": len(sa.pickle(""))}


# -- Syndace doubleratchet + x3dh (pure Python over pyca/cryptography) ---------------------------


def _drive(coroutine: object) -> object:
    """Run a coroutine that never suspends (Syndace's async API over synchronous crypto)."""
    try:
        coroutine.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    raise RuntimeError("coroutine suspended")


def syndace_cases(sizes: tuple[int, ...] = SIZES) -> tuple[dict[str, Case], dict[str, int]]:
    """Syndace Double Ratchet round trip, ping-pong, fan-out; X3DH + first message; JSON size."""
    import json

    import doubleratchet
    import x3dh
    from doubleratchet.recommended import (
        HashFunction,
        aead_aes_hmac,
        diffie_hellman_ratchet_curve25519,
        kdf_hkdf,
        kdf_separate_hmacs,
    )

    class Aead(aead_aes_hmac.AEAD):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"bench aead"

    class RootKdf(kdf_hkdf.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"bench root"

    class ChainKdf(kdf_separate_hmacs.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

    class Ratchet(doubleratchet.DoubleRatchet):
        @staticmethod
        def _build_associated_data(associated_data: bytes, header: object) -> bytes:
            return (associated_data + header.ratchet_pub  # type: ignore[attr-defined]
                    + header.sending_chain_length.to_bytes(8, "big")  # type: ignore[attr-defined]
                    + header.previous_sending_chain_length.to_bytes(  # type: ignore[attr-defined]
                        8, "big"))

    class State(x3dh.BaseState):
        @staticmethod
        def _encode_public_key(key_format: object, pub: bytes) -> bytes:
            return b"\x05" + pub

    config = {
        "diffie_hellman_ratchet_class": diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet,
        "root_chain_kdf": RootKdf, "message_chain_kdf": ChainKdf,
        "message_chain_constant": b"\x01\x02", "dos_protection_threshold": 100,
        "max_num_skipped_message_keys": 1000, "aead": Aead,
    }
    info = b"bench x3dh"

    def state() -> object:
        s = State.create(x3dh.IdentityKeyFormat.CURVE_25519, x3dh.HashFunction.SHA_256, info)
        s.generate_pre_keys(1)
        return s

    alice, bob = state(), state()
    first = payload(FIRST_MESSAGE_SIZE)

    def establish() -> tuple[object, object, bytes]:
        secret, ad, header = _drive(alice.get_shared_secret_active(bob.bundle))
        ra, message = _drive(Ratchet.encrypt_initial_message(
            shared_secret=secret, recipient_ratchet_pub=header.signed_pre_key, message=first,
            associated_data=ad, **config))
        secret_b, ad_b, spk = _drive(bob.get_shared_secret_passive(header))
        rb, plaintext = _drive(Ratchet.decrypt_initial_message(
            shared_secret=secret_b, own_ratchet_priv=spk.priv, message=message,
            associated_data=ad_b, **config))
        return ra, rb, ad

    def pair() -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes], object]:
        ra, rb, ad = establish()
        a_to_b = lambda m: _drive(rb.decrypt_message(_drive(ra.encrypt_message(m, ad)), ad))  # noqa: E731
        b_to_a = lambda m: _drive(ra.decrypt_message(_drive(rb.encrypt_message(m, ad)), ad))  # noqa: E731
        b_to_a(b"hello back")
        return a_to_b, b_to_a, (ra, ad)

    cases: dict[str, Case] = {"syndace/establish": establish}
    a_to_b, b_to_a, (ra, _) = pair()
    for size in sizes:
        data = payload(size)
        cases[f"syndace/round-trip/{size}"] = lambda data=data: a_to_b(data)
    cases[f"syndace/ping-pong/{PINGPONG_SIZE}"] = _ping_pong(a_to_b, b_to_a,
                                                             payload(PINGPONG_SIZE))
    senders = [pair()[2] for _ in range(FANOUT_DEVICES)]
    fan_data = payload(FANOUT_SIZE)
    cases[f"syndace/fan-out-{FANOUT_DEVICES}/{FANOUT_SIZE}"] = (
        lambda: [_drive(r.encrypt_message(fan_data, ad)) for r, ad in senders])
    return cases, {"syndace/session-size": len(json.dumps(ra.json))}


def all_cases(sizes: tuple[int, ...] = SIZES, peers: bool = True
              ) -> tuple[dict[str, Case], dict[str, int], dict[str, str]]:
    """Every crypto case, the session sizes, and a note per peer that could not run."""
    cases = floor_cases(sizes) | ours_cases(sizes)
    session_sizes = ours_session_size()
    notes: dict[str, str] = {}
    if not peers:
        return cases, session_sizes, notes
    available = peers_available()
    builders = {"vodozemac": vodozemac_cases, "python-olm": olm_cases, "syndace": syndace_cases}
    for name, builder in builders.items():
        if not available[name]:
            notes[name] = "not installed (pip install -e '.[bench]')"
            continue
        try:
            peer_cases, peer_sizes = builder(sizes)
        except Exception as exc:  # a peer's API drift must not stop the run: report it
            notes[name] = f"could not run: {type(exc).__name__}: {exc}"
            continue
        cases |= peer_cases
        session_sizes |= peer_sizes
    return cases, session_sizes, notes

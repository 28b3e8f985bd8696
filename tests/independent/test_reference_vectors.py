"""Re-derive the published vector files with the spec-only reference in :mod:`.reference`.

Every expected value is recomputed from the private inputs and seeds of each case alone; nothing
here imports :mod:`e2e_proto` or PyNaCl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from . import reference as ref

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

Case = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    """The parsed JSON of ``tests/vectors/<name>``."""
    with (VECTORS / name).open(encoding="utf-8") as fh:
        return json.load(fh)


def _h(value: str) -> bytes:
    """Decode a lowercase-hex vector field."""
    assert value == value.lower(), "vector bytes must be lowercase hex"
    return bytes.fromhex(value)


def _hn(value: str | None) -> bytes | None:
    """Decode an optional hex field (``null`` stays ``None``)."""
    return None if value is None else _h(value)


X3DH = _load("x3dh.json")
RATCHET = _load("ratchet.json")
FINGERPRINT = _load("fingerprint.json")

X3DH_CASES = X3DH["cases"]
X3DH_IDS = [f"x3dh{i}" for i in range(len(X3DH_CASES))]
CONVERSATIONS = RATCHET["conversations"]
CONVERSATION_IDS = [f"conversation{i}" for i in range(len(CONVERSATIONS))]
FP_CASES = FINGERPRINT["cases"]
FP_IDS = [f"{c['local_account']}-{c['remote_account']}" for c in FP_CASES]


# -- File headers -----------------------------------------------------------------------------


def test_file_headers() -> None:
    """Each vector file names its protocol and constants exactly as DESIGN.md §11 does."""
    assert X3DH["protocol"] == "E2EProto X3DH v1"
    assert X3DH["info"].encode() == ref.X3DH_INFO
    assert RATCHET["protocol"] == "E2EProto Ratchet v1"
    assert FINGERPRINT["protocol"] == "E2EProto Fingerprint v0"
    assert FINGERPRINT["iterations"] == ref.FINGERPRINT_ITERATIONS
    assert X3DH_CASES and CONVERSATIONS and FP_CASES


# -- X3DH -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", X3DH_CASES, ids=X3DH_IDS)
def test_x3dh_public_keys(case: Case) -> None:
    """Every public key in an X3DH case follows from its seed or private key."""
    assert ref.ed25519_public_from_seed(_h(case["alice_identity_seed"])) == _h(
        case["alice_identity_public"]
    )
    assert ref.ed25519_public_from_seed(_h(case["bob_identity_seed"])) == _h(
        case["bob_identity_public"]
    )
    assert ref.x25519_public(_h(case["alice_ephemeral_private"])) == _h(
        case["alice_ephemeral_public"]
    )
    assert ref.x25519_public(_h(case["bob_signed_prekey_private"])) == _h(
        case["bob_signed_prekey_public"]
    )
    opk_private = _hn(case["bob_one_time_prekey_private"])
    opk_public = _hn(case["bob_one_time_prekey_public"])
    assert (opk_private is None) == (opk_public is None)
    if opk_private is not None:
        assert ref.x25519_public(opk_private) == opk_public


@pytest.mark.parametrize("case", X3DH_CASES, ids=X3DH_IDS)
def test_x3dh_identity_conversion(case: Case) -> None:
    """The converted X25519 private and public forms of each identity key belong together."""
    for who in ("alice", "bob"):
        seed = _h(case[f"{who}_identity_seed"])
        x_private = ref.ed25519_seed_to_x25519(seed)
        x_public = ref.ed25519_public_to_x25519(ref.ed25519_public_from_seed(seed))
        assert ref.x25519_public(x_private) == x_public


@pytest.mark.parametrize("case", X3DH_CASES, ids=X3DH_IDS)
def test_x3dh_spk_signature(case: Case) -> None:
    """Bob's SPK signature is re-derived exactly (Ed25519 is deterministic) and verifies."""
    spk_id = case["bob_signed_prekey_id"]
    assert 0 <= spk_id < 2**32
    spk_public = _h(case["bob_signed_prekey_public"])
    signature = ref.sign_spk(_h(case["bob_identity_seed"]), spk_id, spk_public)
    assert signature == _h(case["bob_signed_prekey_signature"])
    message = ref.spk_signed_bytes(spk_id, spk_public)
    assert ref.ed25519_verify(_h(case["bob_identity_public"]), signature, message)


@pytest.mark.parametrize("case", X3DH_CASES, ids=X3DH_IDS)
def test_x3dh_initiator(case: Case) -> None:
    """Alice's X3DH from her private inputs gives the listed dh1..dh4, shared secret and AD."""
    result = ref.x3dh_initiator(
        alice_identity_seed=_h(case["alice_identity_seed"]),
        alice_ephemeral_private=_h(case["alice_ephemeral_private"]),
        bob_identity_public=ref.ed25519_public_from_seed(_h(case["bob_identity_seed"])),
        bob_spk_id=case["bob_signed_prekey_id"],
        bob_spk_public=ref.x25519_public(_h(case["bob_signed_prekey_private"])),
        bob_spk_signature=_h(case["bob_signed_prekey_signature"]),
        bob_opk_public=(
            None
            if case["bob_one_time_prekey_private"] is None
            else ref.x25519_public(_h(case["bob_one_time_prekey_private"]))
        ),
    )
    assert result.dh1 == _h(case["dh1"])
    assert result.dh2 == _h(case["dh2"])
    assert result.dh3 == _h(case["dh3"])
    assert result.dh4 == _hn(case["dh4"])
    assert result.shared_secret == _h(case["shared_secret"])
    assert result.associated_data == _h(case["associated_data"])


@pytest.mark.parametrize("case", X3DH_CASES, ids=X3DH_IDS)
def test_x3dh_responder(case: Case) -> None:
    """Bob's X3DH from his private keys reaches the same dh1..dh4, shared secret and AD."""
    result = ref.x3dh_responder(
        bob_identity_seed=_h(case["bob_identity_seed"]),
        bob_spk_private=_h(case["bob_signed_prekey_private"]),
        bob_opk_private=_hn(case["bob_one_time_prekey_private"]),
        alice_identity_public=ref.ed25519_public_from_seed(_h(case["alice_identity_seed"])),
        alice_ephemeral_public=ref.x25519_public(_h(case["alice_ephemeral_private"])),
    )
    assert result.dh1 == _h(case["dh1"])
    assert result.dh2 == _h(case["dh2"])
    assert result.dh3 == _h(case["dh3"])
    assert result.dh4 == _hn(case["dh4"])
    assert result.shared_secret == _h(case["shared_secret"])
    assert result.associated_data == _h(case["associated_data"])


def test_x3dh_rejects_bad_spk_signature() -> None:
    """A bundle whose SPK signature does not verify is refused (§3)."""
    case = X3DH_CASES[0]
    signature = bytearray(_h(case["bob_signed_prekey_signature"]))
    signature[0] ^= 1
    with pytest.raises(ref.SpecError):
        ref.x3dh_initiator(
            _h(case["alice_identity_seed"]),
            _h(case["alice_ephemeral_private"]),
            _h(case["bob_identity_public"]),
            case["bob_signed_prekey_id"],
            _h(case["bob_signed_prekey_public"]),
            bytes(signature),
            _hn(case["bob_one_time_prekey_public"]),
        )


# -- Double Ratchet ---------------------------------------------------------------------------


class _KeyList:
    """Hands out a party's listed ratchet private keys in order and records how many were used."""

    def __init__(self, party: str, hex_keys: list[str]) -> None:
        self.party = party
        self.keys = [_h(k) for k in hex_keys]
        self.used = 0

    def __call__(self) -> bytes:
        if self.used >= len(self.keys):
            raise AssertionError(f"{self.party} needs more ratchet keys than the vector lists")
        key = self.keys[self.used]
        self.used += 1
        return key


def _replay(conversation: Case) -> Iterator[tuple[Case, ref.EncryptedMessage | bytes]]:
    """Run a conversation's events; yield each event with what the reference produced for it."""
    sk = _h(conversation["shared_secret"])
    ad = _h(conversation["associated_data"])
    spk_private = _h(conversation["bob_signed_prekey_private"])
    alice_keys = _KeyList("alice", conversation["alice_ratchet_privates"])
    bob_keys = _KeyList("bob", conversation["bob_ratchet_privates"])
    sessions = {
        "alice": ref.DoubleRatchet.init_alice(sk, ad, ref.x25519_public(spk_private), alice_keys),
        "bob": ref.DoubleRatchet.init_bob(sk, ad, spk_private, bob_keys),
    }
    sent: dict[int, Case] = {}
    for event in conversation["events"]:
        session = sessions[event["party"]]
        number = event["message"]
        if event["op"] == "send":
            assert number not in sent, f"message {number} sent twice"
            sent[number] = event
            yield event, session.encrypt(_h(event["plaintext"]), _h(event["nonce"]))
        elif event["op"] == "receive":
            wire = sent[number]
            assert wire["party"] != event["party"], "a party received its own message"
            yield (
                event,
                session.decrypt(_h(wire["header"]), _h(wire["nonce"]), _h(wire["ciphertext"])),
            )
        else:
            raise AssertionError(f"unknown op {event['op']!r}")
    assert alice_keys.used == len(alice_keys.keys), "unused alice_ratchet_privates"
    assert bob_keys.used == len(bob_keys.keys), "unused bob_ratchet_privates"


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=CONVERSATION_IDS)
def test_ratchet_conversation(conversation: Case) -> None:
    """Replaying a conversation re-derives every header, key and ciphertext and decrypts all."""
    sent = 0
    received: set[int] = set()
    for event, produced in _replay(conversation):
        where = f"{event['op']} by {event['party']} of message {event['message']}"
        if event["op"] == "send":
            assert isinstance(produced, ref.EncryptedMessage)
            assert produced.header.hex() == event["header"], f"header, {where}"
            assert produced.message_key.hex() == event["message_key"], f"message_key, {where}"
            assert produced.ciphertext.hex() == event["ciphertext"], f"ciphertext, {where}"
            sent += 1
        else:
            plaintext = next(
                e["plaintext"]
                for e in conversation["events"]
                if e["op"] == "send" and e["message"] == event["message"]
            )
            assert isinstance(produced, bytes)
            assert produced.hex() == plaintext, f"plaintext, {where}"
            assert event["message"] not in received, f"replayed, {where}"
            received.add(event["message"])
    assert sent and received, "a conversation both sends and receives"


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=CONVERSATION_IDS)
def test_ratchet_headers_decode(conversation: Case) -> None:
    """Each header is msgpack [dh_pub (32-byte bin), pn, n] with n counting within its chain."""
    chains: dict[bytes, int] = {}
    for event in conversation["events"]:
        if event["op"] != "send":
            continue
        dh, _pn, n = ref.decode_header(_h(event["header"]))
        assert n == chains.get(dh, 0)
        chains[dh] = n + 1


def test_ratchet_rejects_tampered_message_and_keeps_state() -> None:
    """A flipped ciphertext bit raises and leaves the receiver's state as it was (§4)."""
    conversation = CONVERSATIONS[0]
    sk = _h(conversation["shared_secret"])
    ad = _h(conversation["associated_data"])
    spk_private = _h(conversation["bob_signed_prekey_private"])
    first = conversation["events"][0]
    assert first["op"] == "send" and first["party"] == "alice"
    bob = ref.DoubleRatchet.init_bob(
        sk, ad, spk_private, _KeyList("bob", conversation["bob_ratchet_privates"])
    )
    before = bob.state
    tampered = bytearray(_h(first["ciphertext"]))
    tampered[-1] ^= 1
    with pytest.raises(ref.SpecError):
        bob.decrypt(_h(first["header"]), _h(first["nonce"]), bytes(tampered))
    assert bob.state == before
    plaintext = bob.decrypt(_h(first["header"]), _h(first["nonce"]), _h(first["ciphertext"]))
    assert plaintext.hex() == first["plaintext"]


# -- Safety numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", FP_CASES, ids=FP_IDS)
def test_fingerprint_safety_number(case: Case) -> None:
    """The safety number follows from the two AIK seeds and accounts, the same from both sides."""
    local_public = ref.ed25519_public_from_seed(_h(case["local_aik_seed"]))
    remote_public = ref.ed25519_public_from_seed(_h(case["remote_aik_seed"]))
    assert local_public == _h(case["local_aik_public"])
    assert remote_public == _h(case["remote_aik_public"])
    iterations = FINGERPRINT["iterations"]
    local_view = ref.safety_number(
        local_public, case["local_account"], remote_public, case["remote_account"], iterations
    )
    remote_view = ref.safety_number(
        remote_public, case["remote_account"], local_public, case["local_account"], iterations
    )
    assert len(local_view) == 60 and local_view.isdigit()
    assert local_view == case["safety_number"]
    assert remote_view == local_view


# -- Sender keys ------------------------------------------------------------------------------

SENDER_KEY = _load("sender_key.json")
SK_CASES = SENDER_KEY["cases"]
SK_IDS = [f"sender_key{i}" for i in range(len(SK_CASES))]


def _receiver(case: Case) -> ref.SenderKeyReceiver:
    """A receiver given the case's chain at iteration 0 (as a distribution would give it)."""
    return ref.SenderKeyReceiver(
        _h(case["group_id"]), case["chain_id"], _h(case["chain_key"]),
        ref.ed25519_public_from_seed(_h(case["signing_seed"])),
    )


def test_sender_key_file_header() -> None:
    """sender_key.json names its protocol as DESIGN.md §13 does and lists cases."""
    assert SENDER_KEY["protocol"] == "E2EProto SenderKey v1"
    assert SK_CASES


@pytest.mark.parametrize("case", SK_CASES, ids=SK_IDS)
def test_sender_key_messages(case: Case) -> None:
    """Every message key, header, ciphertext and signature follows from the case's inputs."""
    assert 0 <= case["chain_id"] < 2**32
    assert ref.ed25519_public_from_seed(_h(case["signing_seed"])) == _h(case["signing_public"])
    iterations = [m["iteration"] for m in case["messages"]]
    assert iterations == sorted(set(iterations)) and iterations[-1] + 1 > len(iterations)
    for listed in case["messages"]:
        produced = ref.sender_key_encrypt(
            _h(case["group_id"]), case["chain_id"], _h(case["chain_key"]),
            _h(case["signing_seed"]), listed["iteration"], _h(listed["plaintext"]),
            _h(listed["nonce"]),
        )
        where = f"iteration {listed['iteration']}"
        assert produced.message_key.hex() == listed["message_key"], f"message_key, {where}"
        assert produced.header.hex() == listed["header"], f"header, {where}"
        assert produced.ciphertext.hex() == listed["ciphertext"], f"ciphertext, {where}"
        assert produced.signature.hex() == listed["signature"], f"signature, {where}"


@pytest.mark.parametrize("case", SK_CASES, ids=SK_IDS)
def test_sender_key_receiver_decrypts_each_once(case: Case) -> None:
    """A receiver holding the chain at iteration 0 decrypts every message in the listed order
    (skipping the gaps), and refuses a second delivery of each."""
    receiver = _receiver(case)
    parts = [
        (_h(m["header"]), _h(m["nonce"]), _h(m["ciphertext"]), _h(m["signature"]))
        for m in case["messages"]
    ]
    for listed, message in zip(case["messages"], parts, strict=True):
        assert receiver.decrypt(*message).hex() == listed["plaintext"]
    for message in parts:
        with pytest.raises(ref.SpecError):
            receiver.decrypt(*message)


def test_sender_key_out_of_order_and_tampering() -> None:
    """Later messages first, then earlier ones from their skipped keys; a flipped signature or
    ciphertext bit is refused and changes nothing."""
    case = SK_CASES[0]
    receiver = _receiver(case)
    messages = case["messages"]
    last = messages[-1]
    for part in ("signature", "ciphertext", "nonce", "header"):
        bad = {name: _h(last[name]) for name in ("header", "nonce", "ciphertext", "signature")}
        flipped = bytearray(bad[part])
        flipped[-1] ^= 1
        bad[part] = bytes(flipped)
        before = replace(receiver, skipped=dict(receiver.skipped))
        with pytest.raises(ref.SpecError):
            receiver.decrypt(bad["header"], bad["nonce"], bad["ciphertext"], bad["signature"])
        assert receiver == before
    for listed in reversed(messages):
        message = (_h(listed[n]) for n in ("header", "nonce", "ciphertext", "signature"))
        assert receiver.decrypt(*message).hex() == listed["plaintext"]

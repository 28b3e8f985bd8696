"""Protocol test vectors: ``python -m e2e_proto.vectors generate|check [--dir DIR]``.

``generate`` writes ``x3dh.json``, ``ratchet.json``, ``fingerprint.json``, ``envelope.json``,
``device_list.json`` (DESIGN §11), ``sender_key.json``, ``group_update.json`` (§13) and
``between.json`` (§16: account links, shared records, cross device lists, the server-to-server
handshake) from fixed seeds. ``check``
re-derives every value in those files from the private inputs the files themselves list, with
this implementation, and reports each mismatch. Another implementation checks itself by doing
what ``check`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import errors, primitives
from .account_link import (
    PRIVATE_SIDE,
    SOCIAL_SIDE,
    LinkRevocation,
    LinkStatement,
    SharedAccount,
    SharedDevice,
    SharedProfile,
    SharedRecord,
    SharedStatus,
    SignedLinkStatement,
)
from .address import Address
from .constants import ACCOUNT_LINK_PRIVATE_PREFIX, ACCOUNT_LINK_SOCIAL_PREFIX
from .cross_identity import CrossDeviceList, SignedCrossDeviceList, cross_link_message
from .devices import DeviceList, SignedDeviceList, link_message
from .fingerprint import safety_number
from .groups import GroupState, GroupUpdate, member_devices_digest
from .keys import (
    Ed25519PublicKey,
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
)
from .peer_link import Handshake
from .ratchet import RatchetMessage, RatchetState, kdf_ck
from .sender_keys import OwnSenderKey, SenderKeyRecord
from .wire import Envelope, FrameDecoder, PreKeyHeader, encode_frame
from .x3dh import initiate, respond

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "tests" / "vectors"
Json = dict[str, Any]


class DeterministicRandom:
    """Reproducible bytes for vector generation: SHA-512(label || counter) blocks. Not secure."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._counter = 0

    def __call__(self, size: int) -> bytes:
        """The next ``size`` bytes of the stream."""
        out = b""
        while len(out) < size:
            out += primitives.sha512(self._label + self._counter.to_bytes(8, "big"))
            self._counter += 1
        return out[:size]


class ScriptedRandom:
    """Returns the given byte strings in order (each request must match its length)."""

    def __init__(self, values: list[bytes]) -> None:
        self._values = iter(values)
        self.used = 0

    def __call__(self, size: int) -> bytes:
        """The next listed value."""
        value = next(self._values, None)
        if value is None or len(value) != size:
            raise AssertionError("the vector file lists fewer or other random values than used")
        self.used += 1
        return value


class RecordingRandom:
    """Wraps a random source and records every value it hands out."""

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self.values: list[bytes] = []

    def __call__(self, size: int) -> bytes:
        """A value from the wrapped source, recorded."""
        value = self._source(size)
        self.values.append(value)
        return value


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _b(value: str) -> bytes:
    return bytes.fromhex(value)


# -- X3DH -------------------------------------------------------------------------------------


def _x3dh_case(rng: DeterministicRandom, spk_id: int, with_opk: bool) -> Json:
    alice = IdentityKeyPair(rng(32))
    bob = IdentityKeyPair(rng(32))
    ephemeral = X25519PrivateKey(rng(32))
    spk = SignedPreKey.create(bob, spk_id, X25519PrivateKey(rng(32)))
    opk = OneTimePreKey(1, X25519PrivateKey(rng(32))) if with_opk else None
    case = {
        "alice_identity_seed": alice.seed.hex(), "alice_ephemeral_private": ephemeral.raw.hex(),
        "bob_identity_seed": bob.seed.hex(), "bob_signed_prekey_id": spk_id,
        "bob_signed_prekey_private": spk.private_key.raw.hex(),
        "bob_one_time_prekey_private": _hex(opk.private_key.raw if opk else None),
    }
    return _x3dh_derive(case)


def _x3dh_derive(case: Json) -> Json:
    """Every output of an X3DH case, from its private inputs; both sides must agree."""
    alice = IdentityKeyPair(_b(case["alice_identity_seed"]))
    bob = IdentityKeyPair(_b(case["bob_identity_seed"]))
    ephemeral = X25519PrivateKey(_b(case["alice_ephemeral_private"]))
    spk_id = case["bob_signed_prekey_id"]
    spk = SignedPreKey.create(bob, spk_id, X25519PrivateKey(_b(case["bob_signed_prekey_private"])))
    opk_private = _bytes(case["bob_one_time_prekey_private"])
    opk = None if opk_private is None else OneTimePreKey(0, X25519PrivateKey(opk_private))
    bundle = PreKeyBundle(bob.public_key, spk_id, spk.public_key, spk.signature,
                          None if opk is None else 0, None if opk is None else opk.public_key)
    sent = initiate(alice, bundle, ephemeral)
    received = respond(bob, alice.public_key, ephemeral.public_key, spk, opk)
    if received != sent:
        raise AssertionError("X3DH initiator and responder disagree")
    return {
        "alice_identity_seed": alice.seed.hex(),
        "alice_identity_public": alice.public_key.raw.hex(),
        "alice_ephemeral_private": ephemeral.raw.hex(),
        "alice_ephemeral_public": ephemeral.public_key.raw.hex(),
        "bob_identity_seed": bob.seed.hex(),
        "bob_identity_public": bob.public_key.raw.hex(),
        "bob_signed_prekey_id": spk_id,
        "bob_signed_prekey_private": spk.private_key.raw.hex(),
        "bob_signed_prekey_public": spk.public_key.raw.hex(),
        "bob_signed_prekey_signature": spk.signature.hex(),
        "bob_one_time_prekey_private": _hex(opk_private),
        "bob_one_time_prekey_public": _hex(opk.public_key.raw if opk else None),
        "dh1": sent.dh1.hex(), "dh2": sent.dh2.hex(), "dh3": sent.dh3.hex(),
        "dh4": _hex(sent.dh4),
        "shared_secret": sent.shared_secret.hex(),
        "associated_data": sent.associated_data.hex(),
    }


def generate_x3dh() -> Json:
    """x3dh.json: four cases, two with a one-time prekey and two without."""
    rng = DeterministicRandom("e2e-proto vectors x3dh")
    cases = [_x3dh_case(rng, spk_id, with_opk)
             for spk_id, with_opk in ((1, True), (2, False), (0xFFFFFFFF, True), (77, False))]
    return {"protocol": "E2EProto X3DH v1", "info": "E2EProto X3DH v1", "cases": cases}


def check_x3dh(data: Json) -> Iterator[str]:
    """Mismatches between x3dh.json and a re-derivation from its private inputs."""
    for index, case in enumerate(data["cases"]):
        yield from _diff(f"x3dh case {index}", case, _x3dh_derive(case))


# -- Double Ratchet ---------------------------------------------------------------------------

# Each script step: ("send", party) sends the next message number; ("recv", party, K) delivers
# message K to ``party``. Between them they cover in-order and out-of-order delivery, skipped
# keys in the current and in an earlier chain, a dropped message and many DH-ratchet turns.
# Each ends with a send by the party that made the last ratchet key, so every listed key
# shapes a published value.
_SCRIPTS: list[list[tuple[Any, ...]]] = [
    [("send", "alice"), ("send", "alice"), ("send", "alice"), ("recv", "bob", 0),
     ("recv", "bob", 1), ("recv", "bob", 2), ("send", "bob"), ("send", "bob"),
     ("recv", "alice", 3), ("recv", "alice", 4), ("send", "alice"), ("recv", "bob", 5),
     ("send", "bob"), ("send", "bob"), ("send", "bob"), ("recv", "alice", 6),
     ("recv", "alice", 7), ("recv", "alice", 8), ("send", "alice"), ("send", "alice"),
     ("recv", "bob", 10), ("recv", "bob", 9), ("send", "bob"), ("recv", "alice", 11),
     ("send", "alice"), ("recv", "bob", 12)],
    [("send", "alice"), ("send", "alice"), ("send", "alice"), ("send", "alice"),
     ("send", "alice"), ("recv", "bob", 4), ("recv", "bob", 1), ("send", "bob"),
     ("send", "bob"), ("recv", "alice", 6), ("send", "alice"), ("send", "alice"),
     ("recv", "bob", 0), ("recv", "bob", 8), ("recv", "bob", 3), ("recv", "alice", 5),
     ("recv", "bob", 2), ("recv", "bob", 7), ("send", "bob"), ("send", "bob"),
     ("send", "bob"), ("recv", "alice", 11), ("recv", "alice", 9), ("recv", "alice", 10),
     ("send", "alice"), ("recv", "bob", 12)],
    [("send", "alice"), ("recv", "bob", 0), ("send", "bob"), ("recv", "alice", 1),
     ("send", "alice"), ("send", "alice"), ("recv", "bob", 3), ("send", "bob"),
     ("send", "bob"), ("recv", "alice", 5), ("send", "alice"), ("recv", "bob", 6),
     ("recv", "bob", 2), ("send", "bob"), ("recv", "alice", 7), ("recv", "alice", 4),
     ("send", "alice"), ("send", "alice"), ("send", "alice"), ("recv", "bob", 10),
     ("recv", "bob", 8), ("send", "bob"), ("recv", "alice", 11), ("send", "alice"),
     ("recv", "bob", 12), ("send", "bob"), ("recv", "alice", 13)],  # 9 is never delivered
]


def _conversation(index: int, script: list[tuple[Any, ...]]) -> Json:
    rng = DeterministicRandom(f"e2e-proto vectors ratchet {index}")
    shared, ad, spk = rng(32), rng(64), rng(32)
    keys = {"alice": RecordingRandom(rng), "bob": RecordingRandom(rng)}
    first_alice_key = keys["alice"](32)
    events = []
    count = 0
    for step in script:
        if step[0] == "send":
            events.append({"op": "send", "party": step[1], "message": count,
                           "plaintext": f"conversation {index} message {count} from {step[1]}"
                           .encode().hex(), "nonce": rng(24).hex()})
            count += 1
        else:
            events.append({"op": "receive", "party": step[1], "message": step[2]})
    conversation = {
        "shared_secret": shared.hex(), "associated_data": ad.hex(),
        "bob_signed_prekey_private": spk.hex(), "events": events,
    }
    _run_conversation(conversation, first_alice_key, keys)
    conversation["alice_ratchet_privates"] = [v.hex() for v in keys["alice"].values]
    conversation["bob_ratchet_privates"] = [v.hex() for v in keys["bob"].values]
    return conversation


def _run_conversation(conversation: Json, first_alice_key: bytes,
                      keys: dict[str, Callable[[int], bytes]]) -> None:
    """Play the events, filling in (or, where present, checking) every derived value."""
    shared = _b(conversation["shared_secret"])
    ad = _b(conversation["associated_data"])
    spk = X25519PrivateKey(_b(conversation["bob_signed_prekey_private"]))
    states = {
        "alice": RatchetState.initialize_alice(shared, spk.public_key,
                                               X25519PrivateKey(first_alice_key)),
        "bob": RatchetState.initialize_bob(shared, spk),
    }
    sent: dict[int, Json] = {}
    for event in conversation["events"]:
        state = states[event["party"]]
        if event["op"] == "send":
            header, message_key = state.next_sending_key()
            nonce = _b(event["nonce"])
            ciphertext = primitives.aead_seal(_b(event["plaintext"]), ad + header, nonce,
                                              message_key)
            derived = {"header": header.hex(), "message_key": message_key.hex(),
                       "ciphertext": ciphertext.hex()}
            for name, value in derived.items():
                if event.setdefault(name, value) != value:
                    raise AssertionError(f"message {event['message']}: {name} differs")
            sent[event["message"]] = event
        else:
            original = sent[event["message"]]
            message = RatchetMessage(_b(original["header"]), _b(original["nonce"]),
                                     _b(original["ciphertext"]))
            plaintext = state.decrypt(message, ad, keys[event["party"]])
            if plaintext.hex() != original["plaintext"]:
                raise AssertionError(f"message {event['message']}: plaintext differs")


def generate_ratchet() -> Json:
    """ratchet.json: three conversations of 24+ events each."""
    return {"protocol": "E2EProto Ratchet v1",
            "conversations": [_conversation(i, s) for i, s in enumerate(_SCRIPTS)]}


def check_ratchet(data: Json) -> Iterator[str]:
    """Replay each conversation with the listed ratchet keys and nonces, checking every value."""
    for index, conversation in enumerate(data["conversations"]):
        alice = [_b(v) for v in conversation["alice_ratchet_privates"]]
        scripted = {"alice": ScriptedRandom(alice[1:]),
                    "bob": ScriptedRandom([_b(v) for v in conversation["bob_ratchet_privates"]])}
        try:
            _run_conversation(json.loads(json.dumps(conversation)), alice[0], scripted)
        except (AssertionError, errors.E2EProtoError) as exc:
            yield f"ratchet conversation {index}: {exc!r}"
            continue
        if scripted["alice"].used != len(alice) - 1 or scripted["bob"].used != len(
                conversation["bob_ratchet_privates"]):
            yield f"ratchet conversation {index}: not every listed ratchet key was used"


# -- Fingerprints -----------------------------------------------------------------------------


def _fingerprint_derive(case: Json) -> Json:
    local = IdentityKeyPair(_b(case["local_aik_seed"]))
    remote = IdentityKeyPair(_b(case["remote_aik_seed"]))
    return {
        "local_account": case["local_account"], "local_aik_seed": local.seed.hex(),
        "local_aik_public": local.public_key.raw.hex(),
        "remote_account": case["remote_account"], "remote_aik_seed": remote.seed.hex(),
        "remote_aik_public": remote.public_key.raw.hex(),
        "safety_number": safety_number(case["local_account"], local.public_key,
                                       case["remote_account"], remote.public_key),
    }


def generate_fingerprint() -> Json:
    """fingerprint.json: three pairs of accounts."""
    rng = DeterministicRandom("e2e-proto vectors fingerprint")
    pairs = [("alice", "bob"), ("carol", "dave.smith"), ("eve_99", "a")]
    cases = [_fingerprint_derive({"local_account": local, "local_aik_seed": rng(32).hex(),
                                  "remote_account": remote, "remote_aik_seed": rng(32).hex()})
             for local, remote in pairs]
    return {"protocol": "E2EProto Fingerprint v0", "iterations": 5200, "cases": cases}


def check_fingerprint(data: Json) -> Iterator[str]:
    """Re-derive every safety number, and check that it is symmetric."""
    for index, case in enumerate(data["cases"]):
        yield from _diff(f"fingerprint case {index}", case, _fingerprint_derive(case))
        swapped = safety_number(case["remote_account"], Ed25519PublicKey(
            _b(case["remote_aik_public"])), case["local_account"], Ed25519PublicKey(
            _b(case["local_aik_public"])))
        if swapped != case["safety_number"]:
            yield f"fingerprint case {index}: the two sides see different numbers"


# -- Device lists -----------------------------------------------------------------------------


def _device_list_derive(case: Json) -> Json:
    aik = IdentityKeyPair(_b(case["aik_seed"]))
    devices = [(d["device_id"], IdentityKeyPair(_b(d["dik_seed"]))) for d in case["devices"]]
    device_list = DeviceList(case["account"], case["version"],
                             tuple((i, dik.public_key) for i, dik in devices))
    signed = device_list.sign(aik)
    SignedDeviceList.verify(aik.public_key, signed.body, signed.signature)
    return {
        "account": case["account"], "aik_seed": aik.seed.hex(),
        "aik_public": aik.public_key.raw.hex(), "version": case["version"],
        "devices": [{"device_id": i, "dik_seed": dik.seed.hex(),
                     "dik_public": dik.public_key.raw.hex()} for i, dik in devices],
        "signed_bytes": device_list.signed_bytes().hex(), "signature": signed.signature.hex(),
        "link_signatures": [
            {"device_id": i,
             "signature": dik.sign(link_message(aik.public_key, case["account"])).hex()}
            for i, dik in devices if i != 0],
    }


def generate_device_list() -> Json:
    """device_list.json: a primary alone, one linked device, and the maximum of four."""
    rng = DeterministicRandom("e2e-proto vectors device list")
    cases = []
    for account, version, ids in (("alice", 1, [0]), ("bob", 2, [0, 1]),
                                  ("carol.m", 9, [0, 1, 2, 5, 6])):
        cases.append(_device_list_derive({
            "account": account, "aik_seed": rng(32).hex(), "version": version,
            "devices": [{"device_id": i, "dik_seed": rng(32).hex()} for i in ids]}))
    return {"protocol": "E2EProto DeviceList v1", "cases": cases}


def check_device_list(data: Json) -> Iterator[str]:
    """Re-derive each list's signed bytes and signatures from the seeds."""
    for index, case in enumerate(data["cases"]):
        yield from _diff(f"device list case {index}", case, _device_list_derive(case))


# -- Sender keys ------------------------------------------------------------------------------

# Each case: a fixed chain id (None: a random one) and the iterations of its listed messages,
# ascending with gaps. Case 1 skips more keys than a receiver keeps (300 -> 2400); case 2 has
# a gap of exactly MAX_SENDER_KEY_FORWARD (20000 -> 45000) and iterations in every msgpack
# integer width, up to u32. Case 1's message at iteration 128 has an empty plaintext.
_SENDER_KEY_CASES: list[tuple[int | None, list[int]]] = [
    (None, [0, 1, 2, 5, 6, 10]),
    (0, [0, 3, 127, 128, 129, 300, 2400]),
    (0xFFFFFFFF, [1, 255, 256, 20000, 45000, 65535, 65536, 65538]),
]


def _sender_key_case(rng: DeterministicRandom, index: int, chain_id: int | None,
                     iterations: list[int]) -> Json:
    group_id = rng(16)
    if chain_id is None:
        chain_id = int.from_bytes(rng(4), "big")
    case = {
        "group_id": group_id.hex(), "chain_id": chain_id, "chain_key": rng(32).hex(),
        "signing_seed": rng(32).hex(),
        "messages": [{"iteration": i,
                      "plaintext": (b"" if (index, i) == (1, 128) else
                                    f"sender key case {index} message {i}".encode()).hex(),
                      "nonce": rng(24).hex()} for i in iterations],
    }
    return _sender_key_derive(case)


def _sender_key_derive(case: Json) -> Json:
    """Every output of a sender-key case from its inputs; a receiver given the chain at
    iteration 0 must decrypt each message, in the listed order."""
    group_id = _b(case["group_id"])
    sender = OwnSenderKey(group_id, case["chain_id"], _b(case["chain_key"]),
                          _b(case["signing_seed"]))
    receiver = SenderKeyRecord(group_id)
    receiver.process(sender.distribution())
    messages = []
    for listed in case["messages"]:
        iteration = listed["iteration"]
        while sender.iteration < iteration:
            sender.next_sending_key()
        message_key, _ = kdf_ck(sender.chain_key)
        plaintext, nonce = _b(listed["plaintext"]), _b(listed["nonce"])
        message = sender.encrypt(plaintext, ScriptedRandom([nonce]))
        if (receiver.decrypt(message) != plaintext or primitives.aead_open(
                message.ciphertext, message.header, nonce, message_key) != plaintext):
            raise AssertionError(f"iteration {iteration}: the message does not decrypt")
        messages.append({
            "iteration": iteration, "plaintext": plaintext.hex(),
            "message_key": message_key.hex(), "nonce": nonce.hex(),
            "header": message.header.hex(), "ciphertext": message.ciphertext.hex(),
            "signature": message.signature.hex()})
    return {
        "group_id": group_id.hex(), "chain_id": sender.chain_id,
        "chain_key": case["chain_key"], "signing_seed": case["signing_seed"],
        "signing_public": sender.signing_pub.raw.hex(), "messages": messages,
    }


def generate_sender_key() -> Json:
    """sender_key.json: three chains with gaps in their iterations."""
    rng = DeterministicRandom("e2e-proto vectors sender key")
    return {"protocol": "E2EProto SenderKey v1",
            "cases": [_sender_key_case(rng, index, chain_id, iterations)
                      for index, (chain_id, iterations) in enumerate(_SENDER_KEY_CASES)]}


def check_sender_key(data: Json) -> Iterator[str]:
    """Re-derive every header, message key, ciphertext and signature; decrypt every message."""
    for index, case in enumerate(data["cases"]):
        try:
            derived = _sender_key_derive(case)
        except (AssertionError, errors.E2EProtoError) as exc:
            yield f"sender key case {index}: {exc!r}"
            continue
        messages = derived.pop("messages")
        yield from _diff(f"sender key case {index}", case, derived)
        if len(messages) != len(case["messages"]):
            yield f"sender key case {index}: message count differs"
        for listed, message in zip(case["messages"], messages, strict=False):
            yield from _diff(f"sender key case {index} iteration {listed['iteration']}",
                             listed, message)


# -- Group updates ----------------------------------------------------------------------------

# Each case: name, members, admins, version, author device id. Case 2 has a 64-character name
# in several scripts, 300 members (msgpack array16, admin indices past 255) and a u64 version.
_GROUP_CASES: list[tuple[str, list[str], list[str], int, int]] = [
    ("friends", ["alice", "bob", "carol"], ["alice"], 1, 0),
    ("Team 🚀 launch", ["alice", "bob", "carol.m", "dave_2"], ["bob", "dave_2"], 7, 3),
    ("Ünïcode—名前" * 4 + "x" * 20, [f"m{i:03d}" for i in range(300)], ["m000", "m299"],
     2**40 + 5, 4),
]
_DIGEST_CASES: list[dict[str, list[int]]] = [
    {"alice": [0]},
    {"bob": [1, 0], "alice": [0, 2, 1]},
    {"carol": [], "alice": [0], "bob": [0, 1, 2, 3, 4]},
]


def _group_update_derive(case: Json) -> Json:
    """Both signed forms of a group state, from its fields and the author's DIK seed."""
    dik = IdentityKeyPair(_b(case["author_seed"]))
    state = GroupState(_b(case["group_id"]), case["version"], case["name"],
                       tuple(case["members"]), tuple(case["admins"]))
    author = Address(case["author_account"], case["author_device"])
    e2e = GroupUpdate.sign(state, author, dik)
    routing = GroupUpdate.sign(state, author, dik, routing=True)
    for update in (e2e, routing):
        decoded = GroupUpdate.decode(update.body, update.signature, update.routing)
        decoded.verify(dik.public_key)
        if decoded.state != update.state or decoded.author != author:
            raise AssertionError("a signed group state does not decode to its fields")
    return {**case, "author_public": dik.public_key.raw.hex(),
            "body": e2e.body.hex(), "signed_bytes": e2e.signed_bytes().hex(),
            "signature": e2e.signature.hex(), "routing_body": routing.body.hex(),
            "routing_signed_bytes": routing.signed_bytes().hex(),
            "routing_signature": routing.signature.hex()}


def generate_group_update() -> Json:
    """group_update.json: three signed group states and three device-set digests."""
    rng = DeterministicRandom("e2e-proto vectors group update")
    cases = []
    for name, members, admins, version, device_id in _GROUP_CASES:
        cases.append(_group_update_derive({
            "group_id": rng(16).hex(), "version": version, "name": name, "members": members,
            "admins": admins, "author_account": admins[-1], "author_device": device_id,
            "author_seed": rng(32).hex()}))
    digests = [{"devices": [[a, d[a]] for a in d], "digest": member_devices_digest(d).hex()}
               for d in _DIGEST_CASES]
    return {"protocol": "E2EProto GroupUpdate v1", "cases": cases, "devices_digests": digests}


def check_group_update(data: Json) -> Iterator[str]:
    """Re-derive both signed forms of every state, and every devices digest."""
    for index, case in enumerate(data["cases"]):
        try:
            derived = _group_update_derive(case)
        except (AssertionError, errors.E2EProtoError) as exc:
            yield f"group update case {index}: {exc!r}"
            continue
        yield from _diff(f"group update case {index}", case, derived)
    for index, case in enumerate(data["devices_digests"]):
        devices = {account: ids for account, ids in case["devices"]}
        if member_devices_digest(devices).hex() != case["digest"]:
            yield f"devices digest {index}: digest differs"


# -- Envelopes and frames ---------------------------------------------------------------------


def _envelope_fields(envelope: Envelope) -> Json:
    header, nonce, ciphertext = envelope.message
    fields: Json = {
        "version": 1, "type": envelope.type,
        "sender_account": envelope.sender.account, "sender_device": envelope.sender.device_id,
        "recipient_account": envelope.recipient.account,
        "recipient_device": envelope.recipient.device_id,
        "header": header.hex(), "nonce": nonce.hex(), "ciphertext": ciphertext.hex(),
    }
    if envelope.prekey is not None:
        fields.update({
            "identity_key": envelope.prekey.identity_key.raw.hex(),
            "ephemeral_key": envelope.prekey.ephemeral_key.raw.hex(),
            "signed_prekey_id": envelope.prekey.signed_prekey_id,
            "one_time_prekey_id": envelope.prekey.one_time_prekey_id,
        })
    return fields


def _json_value(value: Any) -> Any:
    """Frame values as JSON: bytes become {"bin": hex}."""
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _malformed(name: str, kind: str, data: bytes, error: type[Exception]) -> Json:
    return {"name": name, "kind": kind, "input": data.hex(), "error": error.__name__}


def generate_envelope() -> Json:
    """envelope.json: valid envelopes and frames with their fields, and malformed inputs."""
    rng = DeterministicRandom("e2e-proto vectors envelope")
    message = RatchetMessage(bytes.fromhex("93c420") + rng(32) + b"\x00\x05", rng(24), rng(48))
    plain = Envelope(Address("alice", 0), Address("bob", 3), message)
    prekey = Envelope(Address("alice", 1), Address("bob", 0), message, PreKeyHeader(
        IdentityKeyPair(rng(32)).public_key, X25519PrivateKey(rng(32)).public_key, 7, None))
    prekey_opk = Envelope(Address("carol", 4), Address("dave", 2), message, PreKeyHeader(
        IdentityKeyPair(rng(32)).public_key, X25519PrivateKey(rng(32)).public_key, 8, 4096))
    envelopes = [{"encoded": e.encode().hex(), "fields": _envelope_fields(e)}
                 for e in (plain, prekey, prekey_opk)]
    frame_maps = [{"id": 1, "type": "ping"},
                  {"id": 42, "type": "send", "envelopes": [plain.encode()]},
                  {"id": 7, "error": {"code": "unknown_user", "message": "no such user"}}]
    frames = [{"encoded": encode_frame(m).hex(), "decoded": _json_value(m)} for m in frame_maps]

    body = plain.encode()
    good = [1, "message", "alice", 0, "bob", 3, *message]
    import msgpack  # local: only the malformed cases build raw msgpack by hand

    def pack(value: Any) -> bytes:
        return msgpack.packb(value)

    malformed = [
        _malformed("not msgpack", "envelope", b"\xc1", errors.MalformedError),
        _malformed("truncated", "envelope", body[:-5], errors.MalformedError),
        _malformed("trailing bytes", "envelope", body + b"\x00", errors.MalformedError),
        _malformed("a map, not an array", "envelope", pack({"v": 1}), errors.MalformedError),
        _malformed("empty array", "envelope", pack([]), errors.MalformedError),
        _malformed("version 2", "envelope", pack([2, *good[1:]]),
                   errors.UnsupportedVersionError),
        _malformed("version as a string", "envelope", pack(["1", *good[1:]]),
                   errors.UnsupportedVersionError),
        _malformed("unknown type", "envelope", pack([1, "sealed", *good[2:]]),
                   errors.MalformedError),
        _malformed("missing field", "envelope", pack(good[:-1]), errors.MalformedError),
        _malformed("uppercase account", "envelope", pack([*good[:2], "Alice", *good[3:]]),
                   errors.MalformedError),
        _malformed("negative device id", "envelope", pack([*good[:5], -1, *good[6:]]),
                   errors.MalformedError),
        _malformed("23-byte nonce", "envelope", pack([*good[:7], rng(23), good[8]]),
                   errors.MalformedError),
        _malformed("ciphertext shorter than a tag", "envelope", pack([*good[:8], rng(15)]),
                   errors.MalformedError),
        _malformed("prekey identity key of 31 bytes", "envelope",
                   pack([1, "prekey", *good[2:], rng(31), rng(32), 7, None]),
                   errors.MalformedError),
        _malformed("prekey id as a string", "envelope",
                   pack([1, "prekey", *good[2:], rng(32), rng(32), "7", None]),
                   errors.MalformedError),
        _malformed("frame longer than 1 MiB", "frame", (1024 * 1024 + 1).to_bytes(4, "big"),
                   errors.FrameTooLargeError),
        _malformed("frame body not msgpack", "frame", b"\x00\x00\x00\x01\xc1",
                   errors.MalformedError),
        _malformed("frame body an array", "frame", b"\x00\x00\x00\x01\x90",
                   errors.MalformedError),
        _malformed("frame key not a string", "frame", b"\x00\x00\x00\x03\x81\x01\x01",
                   errors.MalformedError),
    ]
    return {"protocol": "E2EProto Envelope v1", "max_frame_size": 1024 * 1024,
            "envelopes": envelopes, "frames": frames, "malformed": malformed}


def decode_input(kind: str, data: bytes) -> Any:
    """Decode a vector input as an envelope or as one frame (None when incomplete)."""
    if kind == "envelope":
        return Envelope.decode(data)
    decoder = FrameDecoder()
    decoder.feed(data)
    return decoder.next_frame()


def check_envelope(data: Json) -> Iterator[str]:
    """Decode every valid input to its fields and back; every malformed one to its error."""
    for index, case in enumerate(data["envelopes"]):
        envelope = Envelope.decode(_b(case["encoded"]))
        yield from _diff(f"envelope {index}", case["fields"], _envelope_fields(envelope))
        if envelope.encode().hex() != case["encoded"]:
            yield f"envelope {index}: re-encoding differs"
    for index, case in enumerate(data["frames"]):
        frame = decode_input("frame", _b(case["encoded"]))
        if _json_value(frame) != case["decoded"]:
            yield f"frame {index}: decoded fields differ"
        if frame is None or encode_frame(frame).hex() != case["encoded"]:
            yield f"frame {index}: re-encoding differs"
    for case in data["malformed"]:
        try:
            decode_input(case["kind"], _b(case["input"]))
        except errors.E2EProtoError as exc:
            if type(exc).__name__ != case["error"]:
                yield f"malformed {case['name']!r}: raised {type(exc).__name__}"
        else:
            yield f"malformed {case['name']!r}: was accepted"


# -- Between the transports (DESIGN §16): account links, shared records, cross device lists,
# -- the server-to-server handshake and sealed frames -------------------------------------------

_LINK_CASES = [("alice", "bob", 0, 1_700_000_000_000), ("a.b-c", "zed_9", 7, 0),
               ("x" * 64, "y" * 64, 2**32 - 1, 2**63 - 1)]
_SHARED_CASES: list[Json] = [
    {"private_account": "alice", "linked_ms": 1_700_000_000_000, "display_name": "",
     "about": "", "statuses": [], "devices": [["primary", None]]},
    {"private_account": "alice", "linked_ms": 1_700_000_000_000,
     "display_name": "Alice Liddell", "about": "line one\nline two ☃",
     "statuses": [["late for a very important date", 1_700_000_100_000],
                  ["🐇", 1_700_000_000_001]],
     "devices": [["primary", 1_700_000_200_000], ["laptop", None], ["phone ☎", 0]]},
]


def _link_derive(case: Json) -> Json:
    """Both signatures of a link statement and a revocation from each side, from the seeds."""
    aik = IdentityKeyPair(_b(case["private_aik_seed"]))
    social = IdentityKeyPair(_b(case["social_device_seed"]))
    statement = LinkStatement(case["private_account"], aik.public_key, case["social_account"],
                              case["social_device"], social.public_key, _b(case["link_id"]),
                              case["issued_ms"])
    signed = statement.sign(aik, social)
    SignedLinkStatement.verify(signed.body, signed.private_signature, signed.social_signature)
    revocations = []
    for side, key in ((PRIVATE_SIDE, aik), (SOCIAL_SIDE, social)):
        revocation = LinkRevocation(statement.link_id, case["issued_ms"] // 2, side)
        signature = revocation.sign(key)
        LinkRevocation.verify(statement, revocation.body(), signature)
        revocations.append({"side": side, "revoked_ms": revocation.revoked_ms,
                            "body": revocation.body().hex(),
                            "signed_bytes": revocation.signed_bytes().hex(),
                            "signature": signature.hex()})
    return {**case, "private_aik_public": aik.public_key.raw.hex(),
            "social_device_public": social.public_key.raw.hex(), "body": signed.body.hex(),
            "private_signed_bytes": (ACCOUNT_LINK_PRIVATE_PREFIX + signed.body).hex(),
            "private_signature": signed.private_signature.hex(),
            "social_signed_bytes": (ACCOUNT_LINK_SOCIAL_PREFIX + signed.body).hex(),
            "social_signature": signed.social_signature.hex(), "revocations": revocations}


def _shared_derive(case: Json) -> Json:
    record = SharedRecord(SharedAccount(case["private_account"], case["linked_ms"]),
                          SharedProfile(case["display_name"], case["about"]),
                          tuple(SharedStatus(t, p) for t, p in case["statuses"]),
                          tuple(SharedDevice(n, seen) for n, seen in case["devices"]))
    if SharedRecord.decode(record.encode()) != record:
        raise AssertionError("a shared record does not decode to its fields")
    return {**case, "encoded": record.encode().hex()}


def _cross_list_derive(case: Json) -> Json:
    key = IdentityKeyPair(_b(case["identity_seed"]))
    devices = [(d["device_id"], IdentityKeyPair(_b(d["dik_seed"]))) for d in case["devices"]]
    listed = CrossDeviceList(case["account"], case["version"],
                             tuple((i, dik.public_key) for i, dik in devices))
    signed = listed.sign(key)
    links = {i: dik.sign(cross_link_message(key.public_key, case["account"]))
             for i, dik in devices}
    SignedCrossDeviceList.verify(key.public_key, signed.body, signed.signature).check_links(
        key.public_key, links)
    return {**case, "identity_public": key.public_key.raw.hex(),
            "devices": [{**d, "dik_public": dik.public_key.raw.hex()}
                        for d, (_, dik) in zip(case["devices"], devices, strict=True)],
            "signed_bytes": listed.signed_bytes().hex(), "signature": signed.signature.hex(),
            "link_signatures": [{"device_id": i, "signature": links[i].hex()}
                                for i, _ in devices]}


def _peer_derive(case: Json) -> Json:
    handshake = Handshake(_b(case["key"]), case["connector"], case["acceptor"],
                          _b(case["acceptor_nonce"]), _b(case["connector_nonce"]))
    connector_key, acceptor_key = handshake.session_keys()
    sealers = {"connector": handshake.channel(True)[0], "acceptor": handshake.channel(False)[0]}
    openers = {"connector": handshake.channel(False)[1], "acceptor": handshake.channel(True)[1]}
    frames = []
    for frame in case["frames"]:
        sealed = sealers[frame["from"]].seal(_b(frame["plaintext"]))
        if openers[frame["from"]].open(sealed) != _b(frame["plaintext"]):
            raise AssertionError("a sealed peer frame does not open")
        frames.append({**frame, "ciphertext": sealed.hex()})
    return {**case, "transcript": handshake.transcript().hex(), "hello": handshake.hello().hex(),
            "welcome": handshake.welcome().hex(), "connector_key": connector_key.hex(),
            "acceptor_key": acceptor_key.hex(), "frames": frames}


def generate_between() -> Json:
    """between.json: link statements and revocations, shared records, cross device lists and
    server-to-server handshakes with sealed frames."""
    rng = DeterministicRandom("e2e-proto vectors between the transports")
    links = [_link_derive({
        "private_account": private, "private_aik_seed": rng(32).hex(), "social_account": social,
        "social_device": device, "social_device_seed": rng(32).hex(), "link_id": rng(16).hex(),
        "issued_ms": issued}) for private, social, device, issued in _LINK_CASES]
    lists = [_cross_list_derive({
        "account": account, "identity_seed": rng(32).hex(), "version": version,
        "devices": [{"device_id": i, "dik_seed": rng(32).hex()} for i in ids]})
        for account, version, ids in (("bob", 1, [3]), ("carol", 4, [0, 2, 7, 9, 2**32 - 1]))]
    peers = []
    for connector, acceptor in (("private", "social"), ("social", "private")):
        peers.append(_peer_derive({
            "key": rng(32).hex(), "connector": connector, "acceptor": acceptor,
            "acceptor_nonce": rng(32).hex(), "connector_nonce": rng(32).hex(),
            "frames": [{"from": side, "plaintext": rng(size).hex()}
                       for side, size in (("connector", 40), ("connector", 0),
                                          ("acceptor", 300), ("connector", 7))]}))
    return {"protocol": "E2EProto Between v1", "link_statements": links,
            "shared_records": [_shared_derive(case) for case in _SHARED_CASES],
            "cross_device_lists": lists, "peer_handshakes": peers}


def check_between(data: Json) -> Iterator[str]:
    """Re-derive every signature, encoding, MAC, key and sealed frame of between.json."""
    for name, derive in (("link_statements", _link_derive), ("shared_records", _shared_derive),
                         ("cross_device_lists", _cross_list_derive),
                         ("peer_handshakes", _peer_derive)):
        for index, case in enumerate(data[name]):
            try:
                derived = derive(case)
            except (AssertionError, errors.E2EProtoError) as exc:
                yield f"{name} {index}: {exc!r}"
                continue
            yield from _diff(f"{name} {index}", case, derived)


def _diff(what: str, expected: Json, derived: Json) -> Iterator[str]:
    for name, value in derived.items():
        if expected.get(name) != value:
            yield f"{what}: {name} is {expected.get(name)!r}, derived {value!r}"


GENERATORS: dict[str, Callable[[], Json]] = {
    "x3dh.json": generate_x3dh, "ratchet.json": generate_ratchet,
    "fingerprint.json": generate_fingerprint, "envelope.json": generate_envelope,
    "device_list.json": generate_device_list, "sender_key.json": generate_sender_key,
    "group_update.json": generate_group_update, "between.json": generate_between,
}
CHECKERS: dict[str, Callable[[Json], Iterator[str]]] = {
    "x3dh.json": check_x3dh, "ratchet.json": check_ratchet,
    "fingerprint.json": check_fingerprint, "envelope.json": check_envelope,
    "device_list.json": check_device_list, "sender_key.json": check_sender_key,
    "group_update.json": check_group_update, "between.json": check_between,
}


def render(data: Json) -> str:
    """The exact text a vector file holds."""
    return json.dumps(data, indent=2) + "\n"


def generate(directory: Path) -> list[Path]:
    """Write every vector file into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in GENERATORS.items():
        path = directory / name
        path.write_text(render(make()))
        written.append(path)
    return written


def check(directory: Path) -> list[str]:
    """Every mismatch found in the vector files of ``directory`` (empty when all agree)."""
    problems = []
    for name, verify in CHECKERS.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        problems.extend(f"{name}: {p}" for p in verify(json.loads(path.read_text())))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: ``generate`` or ``check``."""
    parser = argparse.ArgumentParser(prog="python -m e2e_proto.vectors", description=__doc__)
    parser.add_argument("command", choices=["generate", "check"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help="folder of the vector files (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate(args.dir):
            print(f"wrote {path}")
        return 0
    problems = check(args.dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(CHECKERS)} vector files checked: "
          f"{'all values re-derived' if not problems else f'{len(problems)} mismatches'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Group figures: a 1 KiB group message, warm, beside its floor and vodozemac Megolm; and the
cold first send to a group of 1024 members with two devices each.

Warm: the sender encrypts once whatever the group's size (the relay fans the one ciphertext
out), so a send is one chain step, one seal and one Ed25519 signature (floor: the sign and the
seal alone), and an in-order receive is one verification, one chain step and one open (floor:
the verify and the open). The receive case decrypts the same message each call, its chain put
back to that iteration first (two attribute writes), so it times exactly the in-order path.

Cold: this device's sender key goes to every other member device over the pairwise sessions
(:data:`MEMBERS` x :data:`DEVICES` devices, less this one), then the first message; once with
sessions already there (distribution only) and once making every session from a prekey bundle
first. Timed once each (seconds), with the count of pairwise encryptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import nacl.bindings as sodium
import nacl.utils

from e2e_proto.address import Address
from e2e_proto.constants import GROUP_SIGNATURE_PREFIX, MAX_GROUP_MEMBERS
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.payload import Payload
from e2e_proto.sender_keys import OwnSenderKey, encode_header
from e2e_proto.session import SessionCipher, process_prekey_bundle
from e2e_proto.stores import MemoryProtocolStore, MemorySenderKeyStore
from e2e_proto.wire import decode_group_message, encode_group_message

from .crypto import Case, Device, established, payload

GROUP_MESSAGE_SIZE = 1024
MEMBERS = MAX_GROUP_MEMBERS
DEVICES = 2


def group_cases(peers: bool = True) -> tuple[dict[str, Case], dict[str, str]]:
    """Warm group send and receive of 1 KiB: the floor, ours and (if installed) Megolm."""
    size = GROUP_MESSAGE_SIZE
    data = payload(size)
    cases: dict[str, Case] = {}
    notes: dict[str, str] = {}

    # The floor: the libsodium calls a send and a receive require.
    key, nonce = nacl.utils.random(32), nacl.utils.random(24)
    header = encode_header(bytes(16), 1, 1)
    public, secret = sodium.crypto_sign_seed_keypair(nacl.utils.random(32))
    seal, open_ = (sodium.crypto_aead_xchacha20poly1305_ietf_encrypt,
                   sodium.crypto_aead_xchacha20poly1305_ietf_decrypt)
    sign, verify = sodium.crypto_sign, sodium.crypto_sign_open
    sealed = seal(data, header, nonce, key)
    signed = sign(GROUP_SIGNATURE_PREFIX + header + nonce + sealed, secret)

    def floor_send() -> bytes:
        ciphertext = seal(data, header, nonce, key)
        return sign(GROUP_SIGNATURE_PREFIX + header + nonce + ciphertext, secret)

    def floor_receive() -> bytes:
        verify(signed, public)
        return open_(sealed, header, nonce, key)

    cases[f"floor/group-send/{size}"] = floor_send
    cases[f"floor/group-receive/{size}"] = floor_receive

    # Ours: encrypt + the group message's wire bytes; decode + GroupCipher.decrypt.
    group_id = nacl.utils.random(16)
    sender_key = OwnSenderKey.create(group_id)
    encrypt = sender_key.encrypt
    cases[f"ours/group-send/{size}"] = lambda: encode_group_message(encrypt(data))
    store = MemorySenderKeyStore()
    sender = Address("alice", 0)
    receiver = GroupCipher(store)
    receiver.process(sender, sender_key.distribution())
    record = store.load_sender_key(group_id, sender)
    assert record is not None
    chain = record.chains[sender_key.chain_id]
    at, chain_key = chain.iteration, chain.chain_key
    wire = encode_group_message(sender_key.encrypt(data))
    decrypt = receiver.decrypt

    def receive() -> bytes:
        chain.iteration, chain.chain_key = at, chain_key  # in order, every time
        return decrypt(sender, decode_group_message(wire))

    cases[f"ours/group-receive/{size}"] = receive
    if peers:
        try:
            cases |= _megolm_cases(data)
        except ImportError:
            notes["vodozemac-megolm groups"] = "not installed (pip install -e '.[bench]')"
    return cases, notes


def _megolm_cases(data: bytes) -> dict[str, Case]:
    import vodozemac as v

    outbound = v.GroupSession()
    inbound = v.InboundGroupSession(outbound.session_key)
    message = outbound.encrypt(data)
    return {f"vodozemac-megolm/group-send/{len(data)}": lambda: outbound.encrypt(data),
            f"vodozemac-megolm/group-receive/{len(data)}": lambda: inbound.decrypt(message)}


def cold_send(members: int = MEMBERS, devices: int = DEVICES,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The first send to a new group, timed once with sessions in place and once without."""
    me = Device("m0000", 0)
    targets = [Device(f"m{i:04d}", d) for i in range(members) for d in range(devices)]
    targets = [t for t in targets if t.address != me.address]
    if progress:
        progress(f"cold group send: {len(targets)} sessions to set up")
    bundles = [(t.address, t.bundle()) for t in targets]
    for target in targets:
        established(me, target)
    group_id = nacl.utils.random(16)
    data = payload(GROUP_MESSAGE_SIZE)

    def first_send(protocol: MemoryProtocolStore, make_sessions: bool) -> float:
        started = time.perf_counter()
        if make_sessions:
            for address, bundle in bundles:
                process_prekey_bundle(protocol, address, bundle)
        cipher = GroupCipher(MemorySenderKeyStore())
        plaintext = cipher.distribution(group_id).to_payload(1).encode()
        pairwise = SessionCipher(protocol, me.address)
        envelopes = [pairwise.encrypt(address, plaintext).encode() for address, _ in bundles]
        first = Payload.new("text", 1, text=data.decode()).encode()
        encode_group_message(cipher.encrypt(group_id, first))
        assert len(envelopes) == len(bundles)
        return time.perf_counter() - started

    if progress:
        progress("cold group send: distribution over existing sessions")
    warm_sessions = first_send(me.store, make_sessions=False)
    if progress:
        progress("cold group send: making every session first")
    fresh = MemoryProtocolStore(me.identity)
    with_sessions = first_send(fresh, make_sessions=True)
    return {"members": members, "devices_per_member": devices,
            "pairwise_encryptions": len(bundles), "group_encryptions": 1,
            "distribution_only_seconds": warm_sessions,
            "with_session_setup_seconds": with_sessions}


def cold_table(cold: dict[str, Any], markdown: bool) -> str:
    """The cold first send, as a small table."""
    head = ["first send to a new group", "time", "pairwise encryptions", "group encryptions"]
    rows = [[f"{cold['members']} members x {cold['devices_per_member']} devices, sessions "
             "exist (distribution only)", f"{cold['distribution_only_seconds'] * 1000:.0f} ms",
             str(cold["pairwise_encryptions"]), "1"],
            [f"{cold['members']} members x {cold['devices_per_member']} devices, sessions "
             "made first", f"{cold['with_session_setup_seconds'] * 1000:.0f} ms",
             str(cold["pairwise_encryptions"]), "1"]]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    return "\n".join("  ".join(r) for r in [head, *rows])


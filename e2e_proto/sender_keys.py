"""Sender keys: the group cipher of DESIGN §13 (Signal's and WhatsApp's sender keys).

A sender device keeps one :class:`OwnSenderKey` per group: a random u32 ``chain_id``, a chain
key that steps forward once per message, and an Ed25519 signing key pair. It gives every member
device the chain key and the public signing key as a :class:`SenderKeyDistribution` (a
``sender_key`` payload over the pairwise sessions). A receiver keeps one :class:`SenderKeyRecord`
per (group, sender device): up to five chains of that sender, each with its skipped keys.

:meth:`SenderKeyRecord.decrypt` verifies the signature before it derives any key, computes
everything in local variables and changes the record only after the AEAD tag verified, so a
message that fails (malformed, unknown chain, bad signature, replay, too far ahead, bad tag)
leaves the record exactly as it was. :meth:`SenderKeyRecord.process` keeps the same rule for
distributions, and never moves a chain backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import msgpack

from . import primitives
from .constants import (
    CHAIN_ID_SIZE,
    CHAIN_KEY_SEED,
    GROUP_ID_SIZE,
    GROUP_SIGNATURE_PREFIX,
    KEY_SIZE,
    MAX_GROUP_HEADER_SIZE,
    MAX_SENDER_KEY_CHAINS,
    MAX_SENDER_KEY_FORWARD,
    MAX_SENDER_KEY_SKIPPED,
    MESSAGE_KEY_SEED,
    NONCE_SIZE,
    SENDER_KEY_ITERATION_LIMIT,
)
from .errors import (
    DuplicateMessageError,
    InvalidKeyError,
    LocalProtocolError,
    MalformedError,
    NoSenderKeyError,
    SenderKeyConflictError,
    TooManySkippedError,
    UnsupportedVersionError,
    describe,
)
from .keys import Ed25519PublicKey
from .payload import SENDER_KEY_KIND, Payload
from .primitives import RandomSource, system_random

STATE_VERSION = 1

_U32_LIMIT = 2**32
_ARRAY_OF_THREE = b"\x93"
_hmac = primitives.hmac_sha256
_hmac_pair = primitives.hmac_sha256_pair
_seal = primitives.aead_seal
_open = primitives.aead_open
_sign = primitives.ed25519_sign
_verify = primitives.ed25519_verify
_packb = msgpack.packb
_join = b"".join
_new_message = tuple.__new__  # SenderKeyMessage(...) without the named tuple's Python __new__


class SenderKeyMessage(NamedTuple):
    """One group message: the header ``[group_id, chain_id, iteration]``, nonce, ciphertext and
    the sender's signature over them."""

    header: bytes
    nonce: bytes
    ciphertext: bytes
    signature: bytes


def encode_header(group_id: bytes, chain_id: int, iteration: int) -> bytes:
    """The header bytes: ``msgpack.packb([group_id, chain_id, iteration], use_bin_type=True)``."""
    return _packb([group_id, chain_id, iteration])


def decode_header(header: bytes) -> tuple[bytes, int, int]:
    """(group_id, chain_id, iteration); :class:`MalformedError` unless ``[bin 16, u32, u32]``
    with the iteration below :data:`SENDER_KEY_ITERATION_LIMIT`.

    A header longer than :data:`MAX_GROUP_HEADER_SIZE` is refused before it is unpacked, so its
    shape cannot cost more than those few bytes.
    """
    if type(header) is not bytes or len(header) > MAX_GROUP_HEADER_SIZE:
        raise MalformedError("malformed group message header")
    try:
        group_id, chain_id, iteration = msgpack.unpackb(header)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise MalformedError("malformed group message header") from None
    if (type(group_id) is not bytes or len(group_id) != GROUP_ID_SIZE
            or type(chain_id) is not int or not 0 <= chain_id < _U32_LIMIT
            or type(iteration) is not int or not 0 <= iteration < SENDER_KEY_ITERATION_LIMIT):
        raise MalformedError("malformed group message header")
    return group_id, chain_id, iteration


def signed_bytes(header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """What a group message's signature covers: ``b"e2e-proto/group/v1" || header || nonce ||
    ciphertext``."""
    return _join((GROUP_SIGNATURE_PREFIX, header, nonce, ciphertext))


def _skip_keys(chain_key: bytes, start: int, until: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """The message keys of iterations ``start .. until-1`` worth keeping, and the chain key at
    ``until``. Only the newest :data:`MAX_SENDER_KEY_SKIPPED` are made: older ones would be
    evicted at once."""
    if until - start > MAX_SENDER_KEY_FORWARD:
        raise TooManySkippedError(
            f"message is {until - start} iterations ahead (at most {MAX_SENDER_KEY_FORWARD})")
    keep_from = max(start, until - MAX_SENDER_KEY_SKIPPED)
    for _ in range(start, keep_from):
        chain_key = _hmac(chain_key, CHAIN_KEY_SEED)
    keys = []
    for iteration in range(keep_from, until):
        message_key, chain_key = _hmac_pair(chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        keys.append((iteration, message_key))
    return keys, chain_key


# -- distribution -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderKeyDistribution:
    """A sender key as the sender hands it to a member device: the fields of a ``sender_key``
    payload. ``chain_key`` is the chain key at ``iteration``, the next message's iteration."""

    group_id: bytes
    chain_id: int
    iteration: int
    chain_key: bytes = field(repr=False)
    signing_pub: Ed25519PublicKey

    def __post_init__(self) -> None:
        if type(self.group_id) is not bytes or len(self.group_id) != GROUP_ID_SIZE:
            raise LocalProtocolError("group id must be 16 bytes")
        if not _is_u32(self.chain_id) or not _is_u32(self.iteration):
            raise LocalProtocolError("chain id and iteration must be unsigned 32-bit integers")
        if type(self.chain_key) is not bytes or len(self.chain_key) != KEY_SIZE:
            raise LocalProtocolError("chain key must be 32 bytes")
        if type(self.signing_pub) is not Ed25519PublicKey:
            raise LocalProtocolError("signing_pub must be an Ed25519PublicKey")

    def to_fields(self) -> dict[str, Any]:
        """The payload fields: ``group_id, chain_id, iteration, chain_key, signing_pub``."""
        return {"group_id": self.group_id, "chain_id": self.chain_id,
                "iteration": self.iteration, "chain_key": self.chain_key,
                "signing_pub": self.signing_pub.raw}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> SenderKeyDistribution:
        """Inverse of :meth:`to_fields` (other fields are ignored); :class:`MalformedError` when
        a field is missing or invalid."""
        try:
            return cls(fields["group_id"], fields["chain_id"], fields["iteration"],
                       fields["chain_key"], Ed25519PublicKey(fields["signing_pub"]))
        except (KeyError, TypeError, LocalProtocolError, InvalidKeyError) as exc:
            raise MalformedError(f"sender_key payload is invalid: {exc}") from None

    def to_payload(self, ts: int, random: RandomSource = system_random) -> Payload:
        """A ``sender_key`` payload with a fresh id, to send over each pairwise session."""
        return Payload.new(SENDER_KEY_KIND, ts, random, **self.to_fields())

    @classmethod
    def from_payload(cls, payload: Payload) -> SenderKeyDistribution:
        """The distribution in a received ``sender_key`` payload (:class:`MalformedError` if
        invalid; :class:`LocalProtocolError` for a payload of another kind)."""
        if payload.kind != SENDER_KEY_KIND:
            raise LocalProtocolError(f"a {payload.kind!r} payload is not a sender key")
        return cls.from_fields(payload.fields)


# -- the sender's side ------------------------------------------------------------------------


class OwnSenderKey:
    """This device's sender key in one group: the sending chain and the signing key pair.

    The libsodium signing key and the header bytes before the iteration are made once, so a send
    costs one chain step, one AEAD seal and one Ed25519 signature.
    """

    __slots__ = ("group_id", "chain_id", "iteration", "chain_key", "signing_seed", "signing_pub",
                 "previous_chain_ids", "_secret", "_header_prefix")

    def __init__(self, group_id: bytes, chain_id: int, chain_key: bytes, signing_seed: bytes,
                 iteration: int = 0, previous_chain_ids: tuple[int, ...] = ()) -> None:
        if type(group_id) is not bytes or len(group_id) != GROUP_ID_SIZE:
            raise LocalProtocolError("group id must be 16 bytes")
        if not _is_u32(chain_id) or not _is_u32(iteration):
            raise LocalProtocolError("chain id and iteration must be unsigned 32-bit integers")
        if type(chain_key) is not bytes or len(chain_key) != KEY_SIZE:
            raise LocalProtocolError("chain key must be 32 bytes")
        previous_chain_ids = tuple(previous_chain_ids)
        if (len(previous_chain_ids) >= MAX_SENDER_KEY_CHAINS
                or not all(_is_u32(i) for i in previous_chain_ids)
                or len({chain_id, *previous_chain_ids}) != 1 + len(previous_chain_ids)):
            raise LocalProtocolError("previous chain ids must be up to four other u32 ids")
        public, self._secret = primitives.ed25519_keypair(signing_seed)
        self.group_id = group_id
        self.chain_id = chain_id
        self.iteration = iteration
        self.chain_key = chain_key
        self.signing_seed = signing_seed
        self.signing_pub = Ed25519PublicKey(public)
        self.previous_chain_ids = previous_chain_ids
        self._header_prefix = _ARRAY_OF_THREE + _packb(group_id) + _packb(chain_id)

    @classmethod
    def create(cls, group_id: bytes, random: RandomSource = system_random) -> OwnSenderKey:
        """A new sender key at iteration 0. ``random`` gives, in this order, the chain id
        (4 bytes, big-endian), the chain key (32 bytes) and the signing seed (32 bytes)."""
        return cls(group_id, _random_chain_id(random), random(KEY_SIZE), random(KEY_SIZE))

    def rotate(self, random: RandomSource = system_random) -> OwnSenderKey:
        """A new sender key for the same group (after a member left or a device was unlinked).

        Its chain id differs from this key's and from the previous chain ids remembered here
        (four), so no receiver, which keeps five chains, holds another chain under it.
        """
        used = (self.chain_id, *self.previous_chain_ids)
        chain_id = _random_chain_id(random)
        while chain_id in used:
            chain_id = _random_chain_id(random)
        return OwnSenderKey(self.group_id, chain_id, random(KEY_SIZE), random(KEY_SIZE), 0,
                            used[:MAX_SENDER_KEY_CHAINS - 1])

    def distribution(self) -> SenderKeyDistribution:
        """The current chain key and public signing key, for the group's member devices."""
        return SenderKeyDistribution(self.group_id, self.chain_id, self.iteration,
                                     self.chain_key, self.signing_pub)

    def next_sending_key(self) -> tuple[bytes, bytes]:
        """Advance the chain: (header of the next message, its message key)."""
        iteration = self.iteration
        if iteration >= SENDER_KEY_ITERATION_LIMIT:
            raise LocalProtocolError("this sender key is used up: rotate it")
        header = self._header_prefix + _packb(iteration)
        message_key, self.chain_key = _hmac_pair(self.chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        self.iteration = iteration + 1
        return header, message_key

    def encrypt(self, plaintext: bytes, random: RandomSource = system_random) -> SenderKeyMessage:
        """Encrypt and sign one group message; aad = header, nonce = 24 random bytes."""
        header, message_key = self.next_sending_key()
        nonce = random(NONCE_SIZE)
        ciphertext = _seal(plaintext, header, nonce, message_key)
        signature = _sign(self._secret, _join((GROUP_SIGNATURE_PREFIX, header, nonce, ciphertext)))
        return _new_message(SenderKeyMessage, (header, nonce, ciphertext, signature))

    def to_bytes(self) -> bytes:
        """Versioned msgpack: ``[1, group_id, chain_id, iteration, chain_key, signing_seed,
        previous_chain_ids]``."""
        return _packb([STATE_VERSION, self.group_id, self.chain_id, self.iteration,
                       self.chain_key, self.signing_seed, list(self.previous_chain_ids)])

    @classmethod
    def from_bytes(cls, data: bytes) -> OwnSenderKey:
        """Inverse of :meth:`to_bytes`; :class:`MalformedError` on anything inconsistent."""
        fields = _unpack_state(data, "own sender key")
        try:
            _, group_id, chain_id, iteration, chain_key, seed, previous = fields
            if type(previous) is not list:
                raise ValueError("previous chain ids must be a list")
            return cls(group_id, chain_id, chain_key, seed, iteration, tuple(previous))
        except (ValueError, LocalProtocolError):
            raise MalformedError("own sender key has wrong fields") from None


def _random_chain_id(random: RandomSource) -> int:
    return int.from_bytes(random(CHAIN_ID_SIZE), "big")


# -- the receiver's side ----------------------------------------------------------------------


class SenderChain:
    """One chain of a sender as a receiver holds it: the next iteration, the chain key there,
    the signing key and the skipped message keys (by iteration, oldest first).

    ``skipped`` is replaced when it changes, never changed in place, so whoever kept the
    mapping it had (a store that wrote it) can tell by identity whether it changed since: an
    in-order message leaves it as it was.
    """

    __slots__ = ("chain_id", "iteration", "chain_key", "signing_pub", "skipped")

    def __init__(self, chain_id: int, iteration: int, chain_key: bytes,
                 signing_pub: Ed25519PublicKey, skipped: dict[int, bytes] | None = None) -> None:
        self.chain_id = chain_id
        self.iteration = iteration
        self.chain_key = chain_key
        self.signing_pub = signing_pub
        self.skipped: dict[int, bytes] = skipped if skipped is not None else {}

    def _advance(self, chain_key: bytes, iteration: int, keys: list[tuple[int, bytes]]) -> None:
        """Commit: the chain is at ``iteration`` with ``chain_key``; ``keys`` were skipped."""
        self.chain_key = chain_key
        self.iteration = iteration
        if keys:
            skipped = dict(self.skipped)
            skipped.update(keys)  # every new key is newer than every kept one
            excess = len(skipped) - MAX_SENDER_KEY_SKIPPED
            if excess > 0:
                for old in list(islice(skipped, excess)):
                    del skipped[old]
            self.skipped = skipped

    def _use_skipped(self, iteration: int) -> None:
        """Commit: the skipped key of ``iteration`` was used."""
        skipped = dict(self.skipped)
        del skipped[iteration]
        self.skipped = skipped

    def skipped_to_bytes(self) -> bytes:
        """The skipped keys alone, for a store that keeps them apart from the chain:
        msgpack ``[[iteration, message_key], ...]``, oldest first."""
        return _packb([[i, k] for i, k in self.skipped.items()])


class SenderKeyRecord:
    """What a receiver holds of one sender device's keys in one group: up to five chains by
    chain id, oldest first."""

    __slots__ = ("group_id", "chains")

    def __init__(self, group_id: bytes, chains: dict[int, SenderChain] | None = None) -> None:
        if type(group_id) is not bytes or len(group_id) != GROUP_ID_SIZE:
            raise LocalProtocolError("group id must be 16 bytes")
        self.group_id = group_id
        self.chains: dict[int, SenderChain] = chains if chains is not None else {}

    def process(self, distribution: SenderKeyDistribution) -> bool:
        """Take in the sender's distribution; True when the record changed.

        An unknown chain becomes the newest (the oldest beyond five is evicted). A known chain
        never moves backwards: a distribution at or behind its iteration changes nothing; one
        ahead moves it forward, keeping the keys in between as skipped keys, as a message there
        would (beyond :data:`MAX_SENDER_KEY_FORWARD` iterations it jumps, keeping none).
        :class:`SenderKeyConflictError`, changing nothing, when the known chain has another
        signing key or its chain key does not lead to the distribution's.
        """
        if distribution.group_id != self.group_id:
            raise LocalProtocolError("the distribution is for another group")
        chains = self.chains
        chain = chains.get(distribution.chain_id)
        if chain is None:
            chains[distribution.chain_id] = SenderChain(
                distribution.chain_id, distribution.iteration, distribution.chain_key,
                distribution.signing_pub)
            for old in list(islice(chains, max(0, len(chains) - MAX_SENDER_KEY_CHAINS))):
                del chains[old]
            return True
        if chain.signing_pub != distribution.signing_pub:
            raise SenderKeyConflictError(
                f"chain {distribution.chain_id} is held with another signing key")
        target = distribution.iteration
        if target <= chain.iteration:
            return False
        if target - chain.iteration > MAX_SENDER_KEY_FORWARD:
            chain._advance(distribution.chain_key, target, [])
            return True
        keys, chain_key = _skip_keys(chain.chain_key, chain.iteration, target)
        if chain_key != distribution.chain_key:
            raise SenderKeyConflictError(
                f"chain {distribution.chain_id}'s chain key does not lead to the distribution's")
        chain._advance(chain_key, target, keys)
        return True

    def decrypt(self, message: SenderKeyMessage) -> bytes:
        """Verify and decrypt one group message of this sender, in any order.

        Raises, changing nothing: :class:`MalformedError`, :class:`NoSenderKeyError` (a group or
        chain not held), :class:`InvalidSignatureError` (checked before any key is derived),
        :class:`DuplicateMessageError` (its key is used up or was evicted),
        :class:`TooManySkippedError`, :class:`DecryptionError`.
        """
        header, nonce, ciphertext, signature = message
        group_id, chain_id, iteration = decode_header(header)
        if (type(nonce) is not bytes or len(nonce) != NONCE_SIZE
                or type(ciphertext) is not bytes):
            raise MalformedError("group message nonce or ciphertext is invalid")
        chain = self.chains.get(chain_id) if group_id == self.group_id else None
        if chain is None:
            raise NoSenderKeyError(f"no sender key for chain {chain_id} of this group")
        _verify(chain.signing_pub.raw,
                _join((GROUP_SIGNATURE_PREFIX, header, nonce, ciphertext)), signature)

        current = chain.iteration
        if iteration == current:  # the common case: in order, nothing to skip
            message_key, next_key = _hmac_pair(chain.chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
            plaintext = _open(ciphertext, header, nonce, message_key)
            chain.chain_key = next_key
            chain.iteration = iteration + 1
            return plaintext
        if iteration < current:
            message_key = chain.skipped.get(iteration)
            if message_key is None:
                raise DuplicateMessageError("group message already received (or key evicted)")
            plaintext = _open(ciphertext, header, nonce, message_key)
            chain._use_skipped(iteration)
            return plaintext
        keys, chain_key = _skip_keys(chain.chain_key, current, iteration)
        message_key, next_key = _hmac_pair(chain_key, MESSAGE_KEY_SEED, CHAIN_KEY_SEED)
        plaintext = _open(ciphertext, header, nonce, message_key)
        chain._advance(next_key, iteration + 1, keys)
        return plaintext

    def to_bytes(self, *, skipped: bool = True) -> bytes:
        """Versioned msgpack: ``[1, group_id, chains]``, oldest chain first, each chain
        ``[chain_id, iteration, chain_key, signing_pub, [[iteration, message_key], ...]]`` with
        its skipped keys oldest first. ``skipped=False`` leaves every chain's list empty, for a
        store that keeps them apart (:meth:`SenderChain.skipped_to_bytes`)."""
        return _packb([STATE_VERSION, self.group_id, [
            [c.chain_id, c.iteration, c.chain_key, c.signing_pub.raw,
             [[i, k] for i, k in c.skipped.items()] if skipped else []]
            for c in self.chains.values()]])

    @classmethod
    def from_bytes(cls, data: bytes, skipped: Mapping[int, bytes] | None = None
                   ) -> SenderKeyRecord:
        """Inverse of :meth:`to_bytes`; ``skipped`` gives the skipped keys kept apart, by chain
        id (:meth:`SenderChain.skipped_to_bytes`). :class:`MalformedError` on anything
        inconsistent, including more chains or skipped keys than are ever kept, and skipped
        keys given apart for a chain the record does not hold or holds with skipped keys."""
        fields = _unpack_state(data, "sender key record")
        apart = {} if skipped is None else skipped
        try:
            _, group_id, chain_fields = fields
            record = cls(group_id)
            if type(chain_fields) is not list or len(chain_fields) > MAX_SENDER_KEY_CHAINS:
                raise ValueError("too many chains")
            for chain_id, iteration, chain_key, signing_pub, inline in chain_fields:
                if not _is_u32(chain_id) or chain_id in record.chains or not _is_u32(iteration):
                    raise ValueError("bad chain id or iteration")
                if chain_id in apart:
                    if inline != []:
                        raise ValueError("skipped keys both in the chain and apart")
                    inline = _unpack_skipped(apart[chain_id])
                record.chains[chain_id] = SenderChain(
                    chain_id, iteration, _key(chain_key), Ed25519PublicKey(signing_pub),
                    _skipped_keys(inline, iteration))
            if not apart.keys() <= record.chains.keys():
                raise ValueError("skipped keys of a chain the record does not hold")
        except (ValueError, TypeError, LocalProtocolError, InvalidKeyError):
            raise MalformedError("sender key record has wrong fields") from None
        return record


def _skipped_keys(pairs: object, iteration: int) -> dict[int, bytes]:
    """Skipped keys from ``[[iteration, key], ...]``: ascending, below ``iteration``, bounded."""
    if type(pairs) is not list or len(pairs) > MAX_SENDER_KEY_SKIPPED:
        raise ValueError("too many skipped keys")
    keys: dict[int, bytes] = {}
    previous = -1
    for index, key in pairs:
        if type(index) is not int or not previous < index < iteration:
            raise ValueError("skipped keys must be ascending and behind the chain")
        keys[index] = _key(key)
        previous = index
    return keys


def _unpack_skipped(data: bytes) -> object:
    """The ``[[iteration, key], ...]`` list of :meth:`SenderChain.skipped_to_bytes` (checked by
    :func:`_skipped_keys`)."""
    try:
        return msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise ValueError("skipped keys are not valid msgpack") from None


def _unpack_state(data: bytes, what: str) -> list[Any]:
    """A stored state's msgpack list, after checking its version."""
    try:
        fields = msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise MalformedError(f"{what} is not valid msgpack") from None
    if type(fields) is not list or not fields or type(fields[0]) is not int:
        raise MalformedError(f"{what} must be a list that starts with its version")
    if fields[0] != STATE_VERSION:
        raise UnsupportedVersionError(f"{what} version {describe(fields[0])} is unknown")
    return fields


def _is_u32(value: object) -> bool:
    return type(value) is int and 0 <= value < _U32_LIMIT


def _key(value: object) -> bytes:
    if type(value) is not bytes or len(value) != KEY_SIZE:
        raise ValueError("key must be 32 bytes")
    return value

"""Wire codecs: envelopes (DESIGN §5), group messages (§13), length-prefixed frames (§8).

Decoders are strict: anything but the exact shape raises
:class:`~e2e_proto.errors.MalformedError` (or :class:`UnsupportedVersionError`,
:class:`FrameTooLargeError`); no msgpack, KeyError or TypeError escapes.

Envelope (a msgpack array, version first)::

    [1, "message", sender_account, sender_device, recipient_account, recipient_device,
     header, nonce, ciphertext]
    [1, "prekey",  ...the same nine fields...,
     initiator_identity_key, ephemeral_key, signed_prekey_id, one_time_prekey_id or nil]

An account field is a local name or a foreign one (``name@private``, ``name@social``: an
account of the other transport, :mod:`e2e_proto.address`).

Group message (a msgpack array, version first; at most one frame's size)::

    [1, header, nonce, ciphertext, signature]

Group envelope (what the relay stores for each member device: the sender it authenticated,
then the sender's group message)::

    [1, "group", sender_account, sender_device, header, nonce, ciphertext, signature]

Frame: a 4-byte big-endian length, then that many bytes holding one msgpack map with str keys.

All are unpacked within :class:`~e2e_proto.unpack.UnpackLimits`: ``ENVELOPE_LIMITS`` (an
envelope or a delivery), ``GROUP_MESSAGE_LIMITS`` and, for frames,
:data:`~e2e_proto.unpack.FRAME_LIMITS` by default or a server's tighter limits for its requests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from .address import Address, is_valid_account, is_valid_device_id, is_valid_envelope_account
from .constants import (
    ENVELOPE_VERSION,
    GROUP_MESSAGE_VERSION,
    MAX_ACCOUNT_LENGTH,
    MAX_FRAME_SIZE,
    MAX_GROUP_HEADER_SIZE,
    NONCE_SIZE,
    SIGNATURE_SIZE,
    TAG_SIZE,
)
from .errors import (
    FrameTooLargeError,
    InvalidKeyError,
    LocalProtocolError,
    MalformedError,
    UnsupportedVersionError,
    describe,
)
from .keys import Ed25519PublicKey, X25519PublicKey
from .ratchet import RatchetMessage
from .sender_keys import SenderKeyMessage
from .unpack import FRAME_LIMITS, UnpackLimits

MESSAGE = "message"
PREKEY = "prekey"
GROUP = "group"
_MESSAGE_FIELDS = 9
_PREKEY_FIELDS = 13
_GROUP_MESSAGE_FIELDS = 5
_GROUP_ENVELOPE_FIELDS = 8
_U32_LIMIT = 2**32
_LENGTH = struct.Struct(">I")
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)
_packb = msgpack.packb

ENVELOPE_LIMITS = UnpackLimits(
    max_str_len=MAX_ACCOUNT_LENGTH,  # the longest str is an account name ("prekey" is shorter)
    max_bin_len=MAX_FRAME_SIZE,  # the ciphertext: an envelope travels inside one frame
    max_array_len=_PREKEY_FIELDS,  # the envelope itself, 9 or 13 fields
    max_map_len=0, max_containers=1)  # one flat array: nothing nests
"""An envelope, pairwise or a group envelope (8 fields): one flat array of at most 13 fields."""

GROUP_MESSAGE_LIMITS = UnpackLimits(
    # No field is a str; one in its place (a version "1") is refused by the checks that follow,
    # with their typed error. A str or bin costs its wire size once, and a group message
    # travels inside one frame.
    max_str_len=MAX_FRAME_SIZE, max_bin_len=MAX_FRAME_SIZE,
    max_array_len=_GROUP_MESSAGE_FIELDS, max_map_len=0, max_containers=1)
"""A group message: one flat array of 5 fields (the same bound as its checks)."""



@dataclass(frozen=True, slots=True)
class PreKeyHeader:
    """The X3DH fields of a prekey envelope: who Alice is and which of Bob's prekeys she used."""

    identity_key: Ed25519PublicKey
    ephemeral_key: X25519PublicKey
    signed_prekey_id: int
    one_time_prekey_id: int | None


class Envelope(NamedTuple):
    """One ratchet message addressed to one device; a prekey envelope also carries X3DH fields.

    A named tuple: one is made per message and per device on the hot path, and a tuple is
    several times cheaper to build than a frozen dataclass.
    """

    sender: Address
    recipient: Address
    message: RatchetMessage
    prekey: PreKeyHeader | None = None

    @property
    def type(self) -> str:
        """``"prekey"`` or ``"message"``."""
        return MESSAGE if self.prekey is None else PREKEY

    def encode(self) -> bytes:
        """The envelope's msgpack bytes."""
        sender, recipient, (header, nonce, ciphertext) = self.sender, self.recipient, self.message
        fields: list[Any] = [
            ENVELOPE_VERSION, MESSAGE, sender.account, sender.device_id,
            recipient.account, recipient.device_id, header, nonce, ciphertext,
        ]
        prekey = self.prekey
        if prekey is not None:
            fields[1] = PREKEY
            fields += (prekey.identity_key.raw, prekey.ephemeral_key.raw,
                       prekey.signed_prekey_id, prekey.one_time_prekey_id)
        return _packb(fields)

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse and validate envelope bytes."""
        try:
            fields = ENVELOPE_LIMITS.unpack(data)
        except _UNPACK_ERRORS:
            raise MalformedError("envelope is not valid msgpack or not one flat array") from None
        return cls.from_fields(fields)

    @classmethod
    def from_fields(cls, fields: object) -> Envelope:
        """Validate an already unpacked envelope (a list)."""
        if type(fields) is not list or not fields:
            raise MalformedError("envelope must be a non-empty msgpack array")
        if fields[0] != ENVELOPE_VERSION or type(fields[0]) is not int:
            raise UnsupportedVersionError(
                f"unsupported envelope version {describe(fields[0])}")
        kind = fields[1] if len(fields) > 1 else None
        if kind == MESSAGE:
            expected = _MESSAGE_FIELDS
        elif kind == PREKEY:
            expected = _PREKEY_FIELDS
        else:
            raise MalformedError(f"unknown envelope type {describe(kind)}")
        if len(fields) != expected:
            raise MalformedError(f"{kind} envelope must have {expected} fields")
        s_acct, s_dev, r_acct, r_dev, header, nonce, ciphertext = fields[2:9]
        if not (is_valid_envelope_account(s_acct) and is_valid_device_id(s_dev)
                and is_valid_envelope_account(r_acct) and is_valid_device_id(r_dev)):
            raise MalformedError("envelope addresses are invalid")
        if (type(header) is not bytes or type(nonce) is not bytes or len(nonce) != NONCE_SIZE
                or type(ciphertext) is not bytes or len(ciphertext) < TAG_SIZE):
            raise MalformedError("envelope header, nonce or ciphertext is invalid")
        prekey = None
        if kind == PREKEY:
            identity, ephemeral, spk_id, opk_id = fields[9:]
            if not _is_u32(spk_id) or not (opk_id is None or _is_u32(opk_id)):
                raise MalformedError("prekey ids must be unsigned 32-bit integers")
            try:
                prekey = PreKeyHeader(Ed25519PublicKey(identity), X25519PublicKey(ephemeral),
                                      spk_id, opk_id)
            except InvalidKeyError:
                raise MalformedError("prekey envelope keys must be 32 bytes") from None
        return cls(Address(s_acct, s_dev), Address(r_acct, r_dev),
                   RatchetMessage(header, nonce, ciphertext), prekey)


def _is_u32(value: object) -> bool:
    return type(value) is int and 0 <= value < _U32_LIMIT


# -- group messages ---------------------------------------------------------------------------


def encode_group_message(message: SenderKeyMessage) -> bytes:
    """A group message's bytes: ``[1, header, nonce, ciphertext, signature]``."""
    data = _packb([GROUP_MESSAGE_VERSION, *message])
    if len(data) > MAX_FRAME_SIZE:
        raise LocalProtocolError(f"group message of {len(data)} bytes exceeds {MAX_FRAME_SIZE}")
    return data


def decode_group_message(data: bytes) -> SenderKeyMessage:
    """Parse and bound a group message; its header's fields are checked when it is decrypted."""
    if type(data) is not bytes or len(data) > MAX_FRAME_SIZE:
        raise MalformedError(f"a group message is bytes, at most {MAX_FRAME_SIZE} of them")
    try:
        fields = GROUP_MESSAGE_LIMITS.unpack(data)
    except _UNPACK_ERRORS:
        raise MalformedError("group message is not valid msgpack or not one flat array"
                             ) from None
    if type(fields) is not list or not fields:
        raise MalformedError("group message must be a non-empty msgpack array")
    if fields[0] != GROUP_MESSAGE_VERSION or type(fields[0]) is not int:
        raise UnsupportedVersionError(f"unsupported group message version {describe(fields[0])}")
    if len(fields) != _GROUP_MESSAGE_FIELDS:
        raise MalformedError(f"group message must have {_GROUP_MESSAGE_FIELDS} fields")
    return _sender_key_message(fields[1:])


def _sender_key_message(fields: list[Any]) -> SenderKeyMessage:
    """``[header, nonce, ciphertext, signature]``, each checked for type and size."""
    header, nonce, ciphertext, signature = fields
    if (type(header) is not bytes or len(header) > MAX_GROUP_HEADER_SIZE
            or type(nonce) is not bytes or len(nonce) != NONCE_SIZE
            or type(ciphertext) is not bytes or len(ciphertext) < TAG_SIZE
            or type(signature) is not bytes or len(signature) != SIGNATURE_SIZE):
        raise MalformedError("group message header, nonce, ciphertext or signature is invalid")
    return SenderKeyMessage(header, nonce, ciphertext, signature)


class GroupEnvelope(NamedTuple):
    """A group message as the relay stores it for each member device: the sender device it
    authenticated, and the sender's signed group message (the same bytes for every device)."""

    sender: Address
    message: SenderKeyMessage

    def encode(self) -> bytes:
        """``[1, "group", sender_account, sender_device, header, nonce, ciphertext,
        signature]``."""
        return _packb([ENVELOPE_VERSION, GROUP, *self.sender, *self.message])


def decode_delivery(data: bytes) -> Envelope | GroupEnvelope:
    """A stored delivery: a pairwise :class:`Envelope` or a :class:`GroupEnvelope`."""
    try:
        fields = ENVELOPE_LIMITS.unpack(data)
    except _UNPACK_ERRORS:
        raise MalformedError("delivery is not valid msgpack or not one flat array") from None
    if type(fields) is not list or len(fields) < 2 or fields[1] != GROUP:
        return Envelope.from_fields(fields)
    if fields[0] != ENVELOPE_VERSION or type(fields[0]) is not int:
        raise UnsupportedVersionError(f"unsupported envelope version {describe(fields[0])}")
    if len(fields) != _GROUP_ENVELOPE_FIELDS:
        raise MalformedError(f"a group envelope must have {_GROUP_ENVELOPE_FIELDS} fields")
    account, device_id = fields[2:4]
    if not (is_valid_account(account) and is_valid_device_id(device_id)):
        raise MalformedError("group envelope sender is invalid")
    return GroupEnvelope(Address(account, device_id), _sender_key_message(fields[4:]))


# -- frames -----------------------------------------------------------------------------------


def encode_frame(message: dict[str, Any], max_size: int = MAX_FRAME_SIZE) -> bytes:
    """A frame: 4-byte big-endian length, then the msgpack map (str keys only)."""
    if type(message) is not dict or not all(type(key) is str for key in message):
        raise LocalProtocolError("a frame is a map with string keys")
    try:
        body = _packb(message)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"frame cannot be encoded: {exc}") from None
    if len(body) > max_size:
        raise LocalProtocolError(f"frame of {len(body)} bytes exceeds the maximum {max_size}")
    return _LENGTH.pack(len(body)) + body


def decode_frame_body(body: bytes | memoryview, limits: UnpackLimits = FRAME_LIMITS
                      ) -> dict[str, Any]:
    """Parse one frame body (any bytes-like object): a msgpack map with str keys, within
    ``limits``."""
    try:
        message = limits.unpack(body)
    except _UNPACK_ERRORS as exc:  # msgpack's messages name the bound, never the data
        reason = str(exc) or type(exc).__name__
        raise MalformedError(f"frame is not valid msgpack within the protocol's limits "
                             f"({reason})") from None
    if type(message) is not dict or not all(type(key) is str for key in message):
        raise MalformedError("frame must be a msgpack map with string keys")
    return message


class FrameDecoder:
    """Sans-IO frame reader: :meth:`feed` it bytes, then take frames with :meth:`next_frame`.

    A length above ``max_size`` raises :class:`FrameTooLargeError` as soon as the 4 length bytes
    arrive, before any of the body is buffered. Each body is unpacked within ``limits``. After
    an error the decoder is unusable. ``max_size`` may be changed between frames (a server
    allows larger frames once a connection has authenticated).
    """

    def __init__(self, max_size: int = MAX_FRAME_SIZE,
                 limits: UnpackLimits = FRAME_LIMITS) -> None:
        self.max_size = max_size
        self.limits = limits
        self._buffer = bytearray()
        self._broken = False

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._broken:
            raise LocalProtocolError("the frame decoder already failed")
        self._buffer += data

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are waiting for the rest."""
        return len(self._buffer)

    def next_frame(self) -> dict[str, Any] | None:
        """The next complete frame, or None when more bytes are needed."""
        if self._broken:
            raise LocalProtocolError("the frame decoder already failed")
        buffer = self._buffer
        if len(buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(buffer)
        if length > self.max_size:
            self._broken = True
            raise FrameTooLargeError(f"frame of {length} bytes exceeds the maximum {self.max_size}")
        end = _LENGTH.size + length
        if len(buffer) < end:
            return None
        # msgpack reads the body in place: a 1 MiB frame is not copied out of the buffer first.
        with memoryview(buffer) as view, view[_LENGTH.size:end] as body:
            try:
                frame = decode_frame_body(body, self.limits)
            except MalformedError:
                self._broken = True
                raise
        del buffer[:end]
        return frame

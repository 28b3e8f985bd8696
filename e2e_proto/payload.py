"""The plaintext inside a ratchet message: a msgpack map, padded to hide its length (DESIGN §5).

A payload is ``{"id": 16 bytes, "ts": milliseconds, "kind": str, ...kind-specific fields}``.
Before encryption it is padded with 0x80 then zero bytes to a multiple of 64 bytes. Kinds this
version does not know are decoded all the same (``Payload.known`` is false), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .constants import PADDING_BLOCK, PAYLOAD_ID_SIZE
from .errors import LocalProtocolError, MalformedError
from .primitives import RandomSource, system_random
from .unpack import FRAME_LIMITS

SENDER_KEY_KIND = "sender_key"
"""A group sender key (:class:`e2e_proto.sender_keys.SenderKeyDistribution` gives its fields)."""
GROUP_UPDATE_KIND = "group_update"
"""A signed group state (:class:`e2e_proto.groups.GroupUpdate` gives its fields)."""
CALL_KEY_KIND = "call_key"
"""A call participant's SFrame base key (:class:`e2e_proto.call_keys.CallKey` gives its fields)."""
PROFILE_KIND = "profile"
"""A profile (:class:`e2e_proto.profiles.ProfileUpdate` gives its fields)."""
STATUS_KIND = "status"
"""A status update (:class:`e2e_proto.profiles.StatusUpdate` gives its fields)."""
KNOWN_KINDS = frozenset(
    {"text", "reaction", "receipt", SENDER_KEY_KIND, GROUP_UPDATE_KIND, "media", "device_sync",
     CALL_KEY_KIND, PROFILE_KIND, STATUS_KIND}
)
_RESERVED = frozenset({"id", "ts", "kind"})
MAX_KIND_LENGTH = 32


def pad(data: bytes) -> bytes:
    """Append 0x80 and then zero bytes up to the next multiple of 64 bytes."""
    return data + b"\x80" + bytes(-(len(data) + 1) % PADDING_BLOCK)


def unpad(data: bytes) -> bytes:
    """Remove the padding of :func:`pad`; :class:`MalformedError` when it is not there."""
    if not data or len(data) % PADDING_BLOCK:
        raise MalformedError("padded payload length is not a multiple of 64")
    end = len(data.rstrip(b"\x00")) - 1
    if end < 0 or data[end] != 0x80 or len(data) - end > PADDING_BLOCK:
        raise MalformedError("payload padding is invalid")
    return data[:end]


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload: its id, timestamp (ms), kind and the kind's own fields."""

    id: bytes
    ts: int
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.id) is not bytes or len(self.id) != PAYLOAD_ID_SIZE:
            raise LocalProtocolError("payload id must be 16 bytes")
        if type(self.ts) is not int or not 0 <= self.ts < 2**63:
            raise LocalProtocolError("payload ts must be an integer in 0 .. 2**63-1")
        if type(self.kind) is not str or not 0 < len(self.kind) <= MAX_KIND_LENGTH:
            raise LocalProtocolError("payload kind must be a short non-empty string")
        if not all(type(name) is str for name in self.fields):
            raise LocalProtocolError("payload field names must be strings")
        if _RESERVED & self.fields.keys():
            raise LocalProtocolError("payload fields may not use id, ts or kind")

    @classmethod
    def new(cls, kind: str, ts: int, random: RandomSource = system_random,
            **fields: Any) -> Payload:
        """A payload with a fresh random id."""
        return cls(random(PAYLOAD_ID_SIZE), ts, kind, fields)

    @property
    def known(self) -> bool:
        """Whether this implementation understands the kind."""
        return self.kind in KNOWN_KINDS

    def encode(self) -> bytes:
        """The padded msgpack bytes that get encrypted."""
        body = {"id": self.id, "ts": self.ts, "kind": self.kind, **self.fields}
        try:
            return pad(msgpack.packb(body))
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"payload field cannot be encoded: {exc}") from None

    @classmethod
    def decode(cls, data: bytes) -> Payload:
        """Unpad and parse; :class:`MalformedError` on anything that is not a valid payload."""
        try:
            body = FRAME_LIMITS.unpack(unpad(data))  # a payload travels inside one frame
        except (ValueError, TypeError, msgpack.UnpackException):
            raise MalformedError("payload is not a msgpack map") from None
        if type(body) is not dict or not all(type(name) is str for name in body):
            raise MalformedError("payload is not a msgpack map with string keys")
        try:
            return cls(body.pop("id"), body.pop("ts"), body.pop("kind"), body)
        except (KeyError, LocalProtocolError) as exc:
            raise MalformedError(f"payload fields are invalid: {exc}") from None

"""A session with one remote device: its ratchet, the remote identity and pending X3DH fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from .errors import E2EProtoError, MalformedError, UnsupportedVersionError, describe
from .keys import Ed25519PublicKey, X25519PublicKey
from .ratchet import RatchetState

RECORD_VERSION = 1
MAX_PREVIOUS_SESSIONS = 3
"""Earlier sessions kept per remote device, so that simultaneous initiation converges."""


@dataclass(slots=True)
class PendingPreKey:
    """What the initiator repeats in every message until the responder first answers."""

    ephemeral_key: X25519PublicKey
    signed_prekey_id: int
    one_time_prekey_id: int | None


@dataclass(slots=True)
class SessionRecord:
    """A session's whole state; serialises to versioned msgpack for the stores.

    ``base_key`` is the initiator's ephemeral key that created the session, so that the
    responder recognises later prekey messages of the same session (and replays of the first).
    ``previous`` holds up to :data:`MAX_PREVIOUS_SESSIONS` sessions this one replaced, newest
    first: when both sides initiate at once, each side's messages may belong to a replaced
    session, which decryption then tries and promotes (as libsignal does).
    """

    remote_identity: Ed25519PublicKey
    associated_data: bytes
    ratchet: RatchetState
    base_key: bytes
    pending: PendingPreKey | None = None
    previous: list[SessionRecord] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """``[1, remote_identity, ad, ratchet, base_key, pending or nil, [previous...]]``."""
        return msgpack.packb(self._fields())

    def _fields(self) -> list[object]:
        pending = self.pending
        return [
            RECORD_VERSION, self.remote_identity.raw, self.associated_data,
            self.ratchet.to_bytes(), self.base_key,
            None if pending is None else [pending.ephemeral_key.raw, pending.signed_prekey_id,
                                          pending.one_time_prekey_id],
            [old._fields() for old in self.previous],
        ]

    def replaced_by(self, newer: SessionRecord) -> SessionRecord:
        """``newer`` as the current session, with this one (and its previous) kept behind it."""
        newer.previous = [self, *self.previous][:MAX_PREVIOUS_SESSIONS]
        self.previous = []
        return newer

    def promote(self, index: int) -> SessionRecord:
        """Make ``previous[index]`` current (it decrypted a message); this one goes behind."""
        chosen = self.previous[index]
        others = [self, *(old for i, old in enumerate(self.previous) if i != index)]
        self.previous = []
        chosen.previous = others[:MAX_PREVIOUS_SESSIONS]
        return chosen

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Inverse of :meth:`to_bytes`; :class:`MalformedError` on anything inconsistent."""
        try:
            fields = msgpack.unpackb(data)
            return cls._from_fields(fields, nested=False)
        except (UnsupportedVersionError, MalformedError):
            raise
        except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException,
                E2EProtoError):
            raise MalformedError("session record is malformed") from None

    @classmethod
    def _from_fields(cls, fields: object, nested: bool) -> SessionRecord:
        if type(fields) is not list or not fields or type(fields[0]) is not int:
            raise ValueError("not a versioned list")
        if fields[0] != RECORD_VERSION:
            raise UnsupportedVersionError(
                f"session record version {describe(fields[0])} is unknown")
        _, identity, ad, ratchet, base_key, pending, previous = fields
        if type(ad) is not bytes or type(base_key) is not bytes or type(previous) is not list:
            raise MalformedError("session record is malformed")
        if len(previous) > MAX_PREVIOUS_SESSIONS or (nested and previous):
            raise MalformedError("session record keeps too many previous sessions")
        record = cls(Ed25519PublicKey(identity), ad, RatchetState.from_bytes(ratchet), base_key,
                     None, [cls._from_fields(old, nested=True) for old in previous])
        if pending is not None:
            ephemeral, spk_id, opk_id = pending
            record.pending = PendingPreKey(X25519PublicKey(ephemeral), spk_id, opk_id)
        return record

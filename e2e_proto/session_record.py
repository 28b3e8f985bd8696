"""A session with one remote device: its ratchet, the remote identity and pending X3DH fields."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from .errors import E2EProtoError, MalformedError, UnsupportedVersionError, describe
from .keys import Ed25519PublicKey, X25519PublicKey
from .ratchet import RatchetState

RECORD_VERSION = 1


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
    """

    remote_identity: Ed25519PublicKey
    associated_data: bytes
    ratchet: RatchetState
    base_key: bytes
    pending: PendingPreKey | None = None

    def to_bytes(self) -> bytes:
        """``[1, remote_identity, ad, ratchet_state, base_key, pending or nil]``."""
        pending = self.pending
        return msgpack.packb([
            RECORD_VERSION, self.remote_identity.raw, self.associated_data,
            self.ratchet.to_bytes(), self.base_key,
            None if pending is None else [pending.ephemeral_key.raw, pending.signed_prekey_id,
                                          pending.one_time_prekey_id],
        ])

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Inverse of :meth:`to_bytes`; :class:`MalformedError` on anything inconsistent."""
        try:
            fields = msgpack.unpackb(data)
            if type(fields) is not list or not fields or type(fields[0]) is not int:
                raise ValueError("not a versioned list")
            if fields[0] != RECORD_VERSION:
                raise UnsupportedVersionError(
                    f"session record version {describe(fields[0])} is unknown")
            _, identity, ad, ratchet, base_key, pending = fields
            record = cls(Ed25519PublicKey(identity), ad, RatchetState.from_bytes(ratchet),
                         base_key, None)
            if pending is not None:
                ephemeral, spk_id, opk_id = pending
                record.pending = PendingPreKey(X25519PublicKey(ephemeral), spk_id, opk_id)
        except UnsupportedVersionError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException,
                E2EProtoError):
            raise MalformedError("session record is malformed") from None
        if type(ad) is not bytes or type(base_key) is not bytes:
            raise MalformedError("session record is malformed")
        return record

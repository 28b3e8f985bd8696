"""A session with one remote device: its ratchet, the remote identity and pending X3DH fields.

A record also remembers the base keys of the sessions it dropped (at most
:data:`~e2e_proto.constants.MAX_REMEMBERED_BASE_KEYS`), so that a replayed initial message of a
dropped session can be refused instead of becoming the current session again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from .constants import KEY_SIZE, MAX_REMEMBERED_BASE_KEYS
from .errors import E2EProtoError, MalformedError, UnsupportedVersionError, describe
from .keys import Ed25519PublicKey, X25519PublicKey
from .ratchet import RatchetState

RECORD_VERSION = 2
"""Written by :meth:`SessionRecord.to_bytes`; version 1 (without ``old_base_keys``) is read too."""
_FIELD_COUNTS = {1: 7, RECORD_VERSION: 8}
"""Versions read, and how many fields a record of each has."""
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
    ``old_base_keys`` holds the base keys of sessions dropped from ``previous``, newest first, at
    most :data:`~e2e_proto.constants.MAX_REMEMBERED_BASE_KEYS`; only the current session (the
    one stored) keeps them.
    """

    remote_identity: Ed25519PublicKey
    associated_data: bytes
    ratchet: RatchetState
    base_key: bytes
    pending: PendingPreKey | None = None
    previous: list[SessionRecord] = field(default_factory=list)
    old_base_keys: list[bytes] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """``[2, remote_identity, ad, ratchet, base_key, pending or nil, [previous...],
        [old base keys...]]``; each previous session is the same array, with both lists empty."""
        return msgpack.packb(self._fields())

    def remembers(self, base_key: bytes) -> bool:
        """Whether ``base_key`` made a session that this record dropped (a replay if seen again)."""
        return base_key in self.old_base_keys

    def _fields(self) -> list[object]:
        pending = self.pending
        return [
            RECORD_VERSION, self.remote_identity.raw, self.associated_data,
            self.ratchet.to_bytes(), self.base_key,
            None if pending is None else [pending.ephemeral_key.raw, pending.signed_prekey_id,
                                          pending.one_time_prekey_id],
            [old._fields() for old in self.previous],
            self.old_base_keys,
        ]

    def replaced_by(self, newer: SessionRecord) -> SessionRecord:
        """``newer`` as the current session, with this one (and its previous) kept behind it.

        The base keys of sessions that no longer fit are remembered, newest first.
        """
        behind = [self, *self.previous]
        dropped = [old.base_key for old in reversed(behind[MAX_PREVIOUS_SESSIONS:])]
        newer.previous = behind[:MAX_PREVIOUS_SESSIONS]
        newer.old_base_keys = [*dropped, *self.old_base_keys][:MAX_REMEMBERED_BASE_KEYS]
        self.previous, self.old_base_keys = [], []
        return newer

    def promote(self, index: int) -> SessionRecord:
        """Make ``previous[index]`` current (it decrypted a message); this one goes behind."""
        chosen = self.previous[index]
        others = [self, *(old for i, old in enumerate(self.previous) if i != index)]
        chosen.previous = others[:MAX_PREVIOUS_SESSIONS]
        chosen.old_base_keys = self.old_base_keys
        self.previous, self.old_base_keys = [], []
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
    def _from_fields(cls, fields: object, nested: bool,
                     version: int | None = None) -> SessionRecord:
        """A record of version 2, or of version 1 (read as 2 with no old base keys).

        ``version`` is the outer record's: a nested previous session has the same layout.
        """
        if type(fields) is not list or not fields or type(fields[0]) is not int:
            raise ValueError("not a versioned list")
        found = fields[0]
        if found not in _FIELD_COUNTS or (version is not None and found != version):
            raise UnsupportedVersionError(f"session record version {describe(found)} is unknown")
        if len(fields) != _FIELD_COUNTS[found]:
            raise MalformedError("session record has a wrong number of fields")
        _, identity, ad, ratchet, base_key, pending, previous, *rest = fields
        old_base_keys = rest[0] if rest else []
        if type(ad) is not bytes or type(base_key) is not bytes or type(previous) is not list:
            raise MalformedError("session record is malformed")
        if len(previous) > MAX_PREVIOUS_SESSIONS or (nested and previous):
            raise MalformedError("session record keeps too many previous sessions")
        if (type(old_base_keys) is not list or len(old_base_keys) > MAX_REMEMBERED_BASE_KEYS
                or (nested and old_base_keys)
                or not all(type(k) is bytes and len(k) == KEY_SIZE for k in old_base_keys)):
            raise MalformedError("session record's old base keys are malformed")
        record = cls(Ed25519PublicKey(identity), ad, RatchetState.from_bytes(ratchet), base_key,
                     None, [cls._from_fields(old, True, found) for old in previous],
                     old_base_keys)
        if pending is not None:
            ephemeral, spk_id, opk_id = pending
            record.pending = PendingPreKey(X25519PublicKey(ephemeral), spk_id, opk_id)
        return record

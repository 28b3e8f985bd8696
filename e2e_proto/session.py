"""Sessions: build one from a prekey bundle, then encrypt and decrypt envelopes.

The surface is as small as libsignal's session cipher: :func:`process_prekey_bundle` (the
initiator's X3DH) and :class:`SessionCipher` with :meth:`~SessionCipher.encrypt` and
:meth:`~SessionCipher.decrypt`. The responder's session is made by decrypting the first prekey
envelope. State goes through a :class:`~e2e_proto.stores.ProtocolStore` and is stored only after
a message decrypted; a failed decryption changes nothing.
"""

from __future__ import annotations

from .address import Address
from .errors import (
    BaseKeyReusedError,
    DuplicateMessageError,
    NoSessionError,
    RemoteProtocolError,
    UnknownPreKeyError,
)
from .keys import PreKeyBundle, X25519PrivateKey
from .primitives import RandomSource, system_random
from .ratchet import RatchetState
from .session_record import PendingPreKey, SessionRecord
from .stores import ProtocolStore
from .wire import Envelope, PreKeyHeader
from .x3dh import initiate, respond

_new_envelope = tuple.__new__  # Envelope(...) without the named tuple's Python __new__


def process_prekey_bundle(store: ProtocolStore, remote: Address, bundle: PreKeyBundle,
                          random: RandomSource = system_random) -> SessionRecord:
    """Run X3DH as initiator against ``bundle`` and store the new session with ``remote``.

    Verifies the bundle's signature first. Messages sent on the new session are prekey envelopes
    until the remote device first answers.
    """
    identity = store.identity_key_pair()
    ephemeral = X25519PrivateKey(random(32))
    result = initiate(identity, bundle, ephemeral)
    ratchet = RatchetState.initialize_alice(result.shared_secret, bundle.signed_prekey,
                                            X25519PrivateKey(random(32)))
    record = SessionRecord(
        bundle.identity_key, result.associated_data, ratchet, ephemeral.public_key.raw,
        PendingPreKey(ephemeral.public_key, bundle.signed_prekey_id, bundle.one_time_prekey_id),
    )
    existing = store.load_session(remote)
    store.save_identity(remote, bundle.identity_key)
    store.store_session(remote, record if existing is None else existing.replaced_by(record))
    return record


class SessionCipher:
    """Encrypts to and decrypts from remote devices, on behalf of the local device ``local``."""

    __slots__ = ("store", "local", "random")

    def __init__(self, store: ProtocolStore, local: Address,
                 random: RandomSource = system_random) -> None:
        self.store = store
        self.local = local
        self.random = random

    def encrypt(self, remote: Address, plaintext: bytes) -> Envelope:
        """Encrypt ``plaintext`` for ``remote``; :class:`NoSessionError` without a session."""
        record = self.store.load_session(remote)
        if record is None:
            raise NoSessionError(f"no session with {remote}")
        message = record.ratchet.encrypt(plaintext, record.associated_data, self.random)
        self.store.store_session(remote, record)
        pending = record.pending
        prekey = None if pending is None else PreKeyHeader(
            self.store.identity_key_pair().public_key, pending.ephemeral_key,
            pending.signed_prekey_id, pending.one_time_prekey_id)
        return _new_envelope(Envelope, (self.local, remote, message, prekey))

    def decrypt(self, envelope: Envelope) -> bytes:
        """Decrypt an envelope sent to this device; the session is stored only on success.

        A prekey envelope creates a session (X3DH as responder) unless it belongs to the
        current or an earlier session (same base key); one whose base key made a session that
        was dropped since is a replay (:class:`~e2e_proto.errors.BaseKeyReusedError`). A new
        session becomes current and the old one is kept behind it; a message that only an
        earlier session can decrypt promotes that session back (both sides initiating at once
        converge this way). A message that any kept session took already is a
        :class:`~e2e_proto.errors.DuplicateMessageError`, whichever session is current. Raises a
        :class:`~e2e_proto.errors.RemoteProtocolError` subclass for anything the sender got
        wrong.
        """
        if envelope.recipient != self.local:
            raise NoSessionError(f"envelope is for {envelope.recipient}, not {self.local}")
        remote = envelope.sender
        current = self.store.load_session(remote)
        if envelope.prekey is None and current is not None:  # the common case
            try:
                plaintext = current.ratchet.decrypt(envelope.message, current.associated_data,
                                                    self.random)
            except RemoteProtocolError:  # perhaps a message of an earlier session
                if not current.previous:
                    raise
            else:
                current.pending = None
                self.store.store_session(remote, current)
                return plaintext
        return self._decrypt_any(envelope, current)

    def _decrypt_any(self, envelope: Envelope, current: SessionRecord | None) -> bytes:
        """The general case: a prekey envelope, or a message for an earlier session."""
        remote = envelope.sender
        prekey = envelope.prekey
        used_opk = None
        if prekey is not None:
            base_key = prekey.ephemeral_key.raw
            candidates = [] if current is None else [current, *current.previous]
            candidates = [c for c in candidates if c.base_key == base_key]
            if not candidates and current is not None and current.remembers(base_key):
                raise BaseKeyReusedError("a prekey message of a session dropped earlier "
                                         "(a replay of its initial message)")
            if not candidates:
                fresh, used_opk = self._respond(prekey)
                candidates = [fresh]
        elif current is None:
            raise NoSessionError(f"no session with {remote} for a message envelope")
        else:
            candidates = [current, *current.previous]
        plaintext, chosen = self._decrypt_with_first(candidates, envelope)
        chosen.pending = None
        if current is None:
            new_current = chosen
        elif chosen is current:
            new_current = current
        elif chosen in current.previous:
            new_current = current.promote(current.previous.index(chosen))
        else:
            new_current = current.replaced_by(chosen)
        if prekey is not None:
            self.store.save_identity(remote, chosen.remote_identity)
        self.store.store_session(remote, new_current)
        if used_opk is not None:
            self.store.remove_one_time_prekey(used_opk)
        return plaintext

    def _decrypt_with_first(self, candidates: list[SessionRecord], envelope: Envelope
                            ) -> tuple[bytes, SessionRecord]:
        """Decrypt with the first session that can; failed attempts change nothing.

        Any refusal by one session (a bad tag, too many skipped keys, a replay on its chains)
        only means "not this session". When none decrypts, a replay on any session's chains is
        raised (:class:`~e2e_proto.errors.DuplicateMessageError`): that session took the message
        already, and the others' errors only say that it is not theirs (a message of an earlier
        session redelivered after the other became current fails the current one's tag).
        Otherwise the first error is raised.
        """
        first_error: RemoteProtocolError | None = None
        replay: DuplicateMessageError | None = None
        for record in candidates:
            try:
                return (record.ratchet.decrypt(envelope.message, record.associated_data,
                                               self.random), record)
            except DuplicateMessageError as exc:  # taken by this session, unless another can
                replay = replay or exc
            except RemoteProtocolError as exc:  # perhaps a message of another session
                first_error = first_error or exc
        error = replay or first_error
        assert error is not None
        raise error

    def _respond(self, prekey: PreKeyHeader) -> tuple[SessionRecord, int | None]:
        """A new responder session from a prekey envelope's X3DH fields (not yet stored)."""
        store = self.store
        signed = store.load_signed_prekey(prekey.signed_prekey_id)
        if signed is None:
            raise UnknownPreKeyError(f"unknown signed prekey {prekey.signed_prekey_id}")
        one_time = None
        if prekey.one_time_prekey_id is not None:
            one_time = store.load_one_time_prekey(prekey.one_time_prekey_id)
            if one_time is None:
                raise UnknownPreKeyError(
                    f"one-time prekey {prekey.one_time_prekey_id} is unknown or already used")
        result = respond(store.identity_key_pair(), prekey.identity_key, prekey.ephemeral_key,
                         signed, one_time)
        ratchet = RatchetState.initialize_bob(result.shared_secret, signed.private_key)
        record = SessionRecord(prekey.identity_key, result.associated_data, ratchet,
                               prekey.ephemeral_key.raw)
        return record, prekey.one_time_prekey_id


"""Store interfaces for protocol state (as libsignal's store traits) and in-memory versions.

The protocol reads and writes its state only through these small :class:`typing.Protocol`
classes; :class:`MemoryProtocolStore` implements the pairwise ones for tests and benchmarks, and
:class:`client.core.protocol_store.SqliteProtocolStore` (I/O, so outside this package) persists
them. :class:`SenderKeyStore` holds group sender keys; :class:`MemorySenderKeyStore` keeps them
in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .address import Address
from .errors import LocalProtocolError
from .keys import Ed25519PublicKey, IdentityKeyPair, OneTimePreKey, SignedPreKey
from .sender_keys import OwnSenderKey, SenderKeyRecord
from .session_record import SessionRecord


class IdentityStore(Protocol):
    """This device's identity key pair and the identity keys seen for remote devices."""

    def identity_key_pair(self) -> IdentityKeyPair:
        """This device's identity (DIK)."""
        ...

    def save_identity(self, address: Address, key: Ed25519PublicKey) -> bool:
        """Remember ``key`` for ``address``; True when it replaced a different key."""
        ...

    def get_identity(self, address: Address) -> Ed25519PublicKey | None:
        """The identity key last saved for ``address``."""
        ...


class PreKeyStore(Protocol):
    """This device's signed and one-time prekeys."""

    def load_signed_prekey(self, key_id: int) -> SignedPreKey | None:
        """The signed prekey with this id, if still kept."""
        ...

    def store_signed_prekey(self, prekey: SignedPreKey) -> None:
        """Keep a signed prekey."""
        ...

    def load_one_time_prekey(self, key_id: int) -> OneTimePreKey | None:
        """The one-time prekey with this id, unless used or unknown."""
        ...

    def store_one_time_prekeys(self, prekeys: Iterable[OneTimePreKey]) -> None:
        """Keep a batch of one-time prekeys."""
        ...

    def remove_one_time_prekey(self, key_id: int) -> None:
        """Forget a one-time prekey for good (after its first use)."""
        ...


class SessionStore(Protocol):
    """Sessions with remote devices."""

    def load_session(self, address: Address) -> SessionRecord | None:
        """The session with ``address``, if any."""
        ...

    def store_session(self, address: Address, record: SessionRecord) -> None:
        """Persist the session with ``address`` (durably, before the caller acknowledges)."""
        ...

    def delete_session(self, address: Address) -> None:
        """Forget the session with ``address``."""
        ...

    def session_devices(self, account: str) -> list[int]:
        """Device ids of ``account`` this device has sessions with."""
        ...


class SenderKeyStore(Protocol):
    """Group sender keys: this device's own per group, and those received per (group, sender)."""

    def load_own_sender_key(self, group_id: bytes) -> OwnSenderKey | None:
        """This device's current sender key in the group, if it made one."""
        ...

    def store_own_sender_key(self, key: OwnSenderKey) -> None:
        """Persist this device's sender key for ``key.group_id`` (before its message is sent)."""
        ...

    def load_sender_key(self, group_id: bytes, sender: Address) -> SenderKeyRecord | None:
        """The chains received from ``sender`` in the group, if any."""
        ...

    def store_sender_key(self, sender: Address, record: SenderKeyRecord) -> None:
        """Persist ``sender``'s chains in ``record.group_id`` (before the caller acknowledges)."""
        ...


class ProtocolStore(IdentityStore, PreKeyStore, SessionStore, Protocol):
    """Everything a :class:`~e2e_proto.session.SessionCipher` needs."""


class MemoryProtocolStore:
    """All protocol stores, in memory: for tests, benchmarks and throw-away clients."""

    def __init__(self, identity: IdentityKeyPair | None = None) -> None:
        self._identity = identity
        self._identities: dict[Address, Ed25519PublicKey] = {}
        self._signed: dict[int, SignedPreKey] = {}
        self._one_time: dict[int, OneTimePreKey] = {}
        self._sessions: dict[Address, SessionRecord] = {}

    def identity_key_pair(self) -> IdentityKeyPair:
        """This device's identity (DIK)."""
        if self._identity is None:
            raise LocalProtocolError("this store has no identity key pair yet")
        return self._identity

    def save_identity(self, address: Address, key: Ed25519PublicKey) -> bool:
        """Remember ``key`` for ``address``; True when it replaced a different key."""
        previous = self._identities.get(address)
        self._identities[address] = key
        return previous is not None and previous != key

    def get_identity(self, address: Address) -> Ed25519PublicKey | None:
        """The identity key last saved for ``address``."""
        return self._identities.get(address)

    def load_signed_prekey(self, key_id: int) -> SignedPreKey | None:
        """The signed prekey with this id, if still kept."""
        return self._signed.get(key_id)

    def store_signed_prekey(self, prekey: SignedPreKey) -> None:
        """Keep a signed prekey."""
        self._signed[prekey.key_id] = prekey

    def load_one_time_prekey(self, key_id: int) -> OneTimePreKey | None:
        """The one-time prekey with this id, unless used or unknown."""
        return self._one_time.get(key_id)

    def store_one_time_prekeys(self, prekeys: Iterable[OneTimePreKey]) -> None:
        """Keep a batch of one-time prekeys."""
        self._one_time.update((p.key_id, p) for p in prekeys)

    def remove_one_time_prekey(self, key_id: int) -> None:
        """Forget a one-time prekey for good."""
        self._one_time.pop(key_id, None)

    def load_session(self, address: Address) -> SessionRecord | None:
        """The session with ``address``, if any."""
        return self._sessions.get(address)

    def store_session(self, address: Address, record: SessionRecord) -> None:
        """Keep the session with ``address``."""
        self._sessions[address] = record

    def delete_session(self, address: Address) -> None:
        """Forget the session with ``address``."""
        self._sessions.pop(address, None)

    def session_devices(self, account: str) -> list[int]:
        """Device ids of ``account`` this device has sessions with."""
        return sorted(a.device_id for a in self._sessions if a.account == account)


class MemorySenderKeyStore:
    """Sender keys in memory: for tests, benchmarks and throw-away clients."""

    def __init__(self) -> None:
        self._own: dict[bytes, OwnSenderKey] = {}
        self._received: dict[tuple[bytes, Address], SenderKeyRecord] = {}

    def load_own_sender_key(self, group_id: bytes) -> OwnSenderKey | None:
        """This device's current sender key in the group, if it made one."""
        return self._own.get(group_id)

    def store_own_sender_key(self, key: OwnSenderKey) -> None:
        """Keep this device's sender key for ``key.group_id``."""
        self._own[key.group_id] = key

    def load_sender_key(self, group_id: bytes, sender: Address) -> SenderKeyRecord | None:
        """The chains received from ``sender`` in the group, if any."""
        return self._received.get((group_id, sender))

    def store_sender_key(self, sender: Address, record: SenderKeyRecord) -> None:
        """Keep ``sender``'s chains in ``record.group_id``."""
        self._received[(record.group_id, sender)] = record

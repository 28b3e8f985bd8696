"""What the relay needs from storage: the :class:`RelayStore` interface and its records.

Relay logic calls only :class:`RelayStore`; no SQL or Redis command lives there, so each backend
is a sibling module: :mod:`server.relay.sqlite_store` (one process, the default) and
:mod:`server.relay.redis_store` (several relay processes on one Redis, DESIGN §17). The interface
is asynchronous because a networked store is; the SQLite store answers without waiting, except
that its mailbox writes wait for their group commit.

Every method that changes state has made it durable before it returns: a send is acknowledged
only once it is on disk (SQLite's commit, or Redis's AOF with ``appendfsync always``). Both
stores answer every call the same way, with the same errors and limits
(``tests/test_relay_store.py`` runs one contract against both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..common.store_base import Bundle

ACCOUNT_CACHE_SIZE = 100_000
"""Decoded accounts a store keeps in memory at most (they are read on every request)."""


class NameTakenError(Exception):
    """The account name is registered already."""


class QuotaExceededError(Exception):
    """A recipient's mailbox is full."""

    def __init__(self, account: str, device_id: int) -> None:
        super().__init__(f"mailbox of {account}.{device_id} is full")
        self.account = account
        self.device_id = device_id


class DeviceGoneError(Exception):
    """A recipient device was removed from its account before the send was stored."""

    def __init__(self, account: str, device_id: int) -> None:
        super().__init__(f"{account}.{device_id} is no longer a device of {account}")
        self.account = account
        self.device_id = device_id


class StaleListError(Exception):
    """A device list older than the stored one."""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account's key and its current signed device list."""

    account: str
    account_key: bytes
    list_version: int
    list_body: bytes
    list_signature: bytes
    devices: dict[int, bytes]  # device id -> device identity key
    max_device_id: int = 0  # the highest device id ever listed: ids are never reused


class NewDevice(NamedTuple):
    """A device joining an account, with the prekeys it published while waiting."""

    device_id: int
    identity_key: bytes
    name: str
    signed_prekey: tuple[int, bytes, bytes]
    one_time_prekeys: Sequence[tuple[int, bytes]]


class DeviceInfo(NamedTuple):
    """What the relay knows of a device besides its key."""

    device_id: int
    name: str
    linked_at: float
    last_seen: float | None


class Delivery(NamedTuple):
    """A stored message for one device."""

    seq: int
    envelope: bytes


class Outgoing(NamedTuple):
    """One envelope to store for one recipient device."""

    account: str
    device_id: int
    envelope: bytes


class Enqueue(NamedTuple):
    """Store one send's envelopes, all or none (:class:`QuotaExceededError` stores none).

    An envelope byte-identical to one still in the recipient's mailbox is that message again
    (its ratchet header and nonce make every message's bytes unique): it is not stored twice,
    so a send retried after an unclear failure is idempotent. A recipient's mailbox is full when
    it holds ``quota`` messages or when the envelope would take it past ``byte_quota`` bytes of
    envelopes (None: no byte limit).
    """

    messages: Sequence[Outgoing]
    sender: tuple[str, int]
    now: float
    quota: int
    byte_quota: int | None = None


class Acknowledge(NamedTuple):
    """Delete messages a device has stored."""

    account: str
    device_id: int
    seqs: Sequence[int]


MailboxWrite = Enqueue | Acknowledge


@dataclass(frozen=True, slots=True)
class PendingLink:
    """A new device's offer, waiting for its account's primary to approve it (``link_request``).

    ``waiter`` names the connection that waits (its challenge nonce), so that only that
    connection's end withdraws the offer.
    """

    account: str
    identity_key: bytes
    name: str
    tag: bytes
    link_signature: bytes
    signed_prekey: tuple[int, bytes, bytes]
    one_time_prekeys: list[tuple[int, bytes]]
    waiter: bytes


class RelayStore(Protocol):
    """What the relay needs from storage.

    A store that cannot be reached or written raises
    :class:`~server.common.store_base.StoreUnavailableError` and has changed nothing.
    Media, when it comes, adds its blob metadata here as one more group of methods (each store
    keeps it beside its other state; Redis under ``e2e:blob:ID``), the bytes staying in files
    under ``--blob-dir``, which the nodes share.
    """

    async def create_account(self, account: str, account_key: bytes, list_version: int,
                             list_body: bytes, list_signature: bytes,
                             devices: dict[int, bytes], now: float) -> None:
        """Register a new account; :class:`NameTakenError` if the name exists."""
        ...

    async def account(self, account: str) -> AccountRecord | None:
        """The account's key and device list."""
        ...

    async def replace_device_list(self, account: str, list_version: int, list_body: bytes,
                                  list_signature: bytes, devices: dict[int, bytes],
                                  added: Sequence[NewDevice], now: float) -> list[int]:
        """Store a newer device list (and its new devices); returns removed device ids.

        Removing a device deletes its prekeys and its mailbox. :class:`StaleListError` when
        the version is not newer than the stored one.
        """
        ...

    async def device_info(self, account: str) -> list[DeviceInfo]:
        """Name, link time and last authentication of each device of ``account``."""
        ...

    async def touch(self, account: str, device_id: int, now: float) -> None:
        """Record that a device authenticated at ``now``."""
        ...

    async def store_prekeys(self, account: str, device_id: int,
                            signed: tuple[int, bytes, bytes] | None,
                            one_time: Sequence[tuple[int, bytes]]) -> int:
        """Set the signed prekey (if given) and add one-time prekeys (an id given again replaces
        its key); returns the OPK count."""
        ...

    async def one_time_prekey_count(self, account: str, device_id: int) -> int:
        """How many one-time prekeys the relay holds for the device."""
        ...

    async def take_bundle(self, account: str, device_id: int) -> tuple[Bundle, int] | None:
        """The device's bundle with its lowest-id OPK, which is deleted in the same atomic step,
        and how many OPKs it has left; None without a signed prekey."""
        ...

    async def enqueue(self, write: Enqueue) -> None:
        """Store one send durably, all or nothing.

        :class:`QuotaExceededError` for a full mailbox, :class:`DeviceGoneError` for a recipient
        removed from its account meanwhile; either stores nothing. Nothing is visible, and the
        caller must answer nothing, before this returns.
        """
        ...

    async def acknowledge(self, write: Acknowledge) -> None:
        """Delete a device's messages by seq, durably (unknown seqs are ignored)."""
        ...

    async def pending(self, account: str, device_id: int, after_seq: int, limit: int
                      ) -> list[Delivery]:
        """Stored messages for the device with seq > ``after_seq``, oldest first.

        Seqs grow with every message stored for a device and are never reused for it.
        """
        ...

    async def expire(self, older_than: float) -> int:
        """Delete messages stored before ``older_than``; returns how many."""
        ...

    async def offer_link(self, lookup: bytes, link: PendingLink, ttl: float) -> bool:
        """File a pending link under ``lookup`` for at most ``ttl`` seconds; False (nothing
        changed) when that lookup is in use."""
        ...

    async def pending_link(self, lookup: bytes) -> PendingLink | None:
        """The pending link filed under ``lookup``."""
        ...

    async def take_link(self, lookup: bytes) -> PendingLink | None:
        """Remove and return the pending link filed under ``lookup`` (it was approved)."""
        ...

    async def withdraw_link(self, lookup: bytes, waiter: bytes) -> None:
        """Remove the pending link under ``lookup`` if ``waiter`` made it (its connection ended)."""
        ...

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

from ..common.blob_index import BlobIndex
from ..common.store_base import Bundle
from ..federation.relay_store import RelayFederationStore
from .config import RelayConfig
from .limits import RelayLimits

ACCOUNT_CACHE_SIZE = 100_000
"""Decoded accounts a store keeps in memory at most (they are read on every request)."""


class NameTakenError(Exception):
    """The account name is registered already."""


class QuotaExceededError(Exception):
    """A recipient's mailbox is full: it holds ``limit`` (messages or bytes) already."""

    def __init__(self, account: str, device_id: int, limit: str) -> None:
        super().__init__(f"mailbox of {account}.{device_id} is full (it may hold {limit}); "
                         "the recipient must collect its messages first")
        self.account = account
        self.device_id = device_id


class DeviceGoneError(Exception):
    """A recipient device was removed from its account before the send was stored."""

    def __init__(self, account: str, device_id: int) -> None:
        super().__init__(f"{account}.{device_id} is no longer a device of {account}")
        self.account = account
        self.device_id = device_id


class BlobGoneError(Exception):
    """A blob the send announces was deleted (its last granted device fetched it, or its TTL
    passed) after the relay checked it, before the send was stored."""

    def __init__(self, blob_id: bytes) -> None:
        super().__init__(f"blob {blob_id.hex()} is gone")
        self.blob_id = blob_id


class PrekeyLimitError(Exception):
    """One-time prekeys would take a device past ``limit``: it holds ``held`` already."""

    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"a device may hold at most {limit} one-time prekeys (it holds {held})")
        self.held = held
        self.limit = limit


class StaleListError(Exception):
    """A device list older than the stored one."""


class StaleGroupError(Exception):
    """A group routing copy not newer than the stored one."""


class GroupLimitError(Exception):
    """An account that created ``limit`` routing copies, still stored, puts a new group."""

    def __init__(self, account: str, limit: int) -> None:
        super().__init__(f"{account} has created {limit} groups on this relay, the most it may "
                         "have; a group goes away when its last member leaves")
        self.limit = limit


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
    """A device joining an account, with the prekeys it published while waiting and its link
    signature (its DIK over ``link_message(account key, account)``, handed to every client)."""

    device_id: int
    identity_key: bytes
    name: str
    signed_prekey: tuple[int, bytes, bytes]
    one_time_prekeys: Sequence[tuple[int, bytes]]
    link_signature: bytes


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

    Each recipient's mailbox may then hold at most ``quota`` messages and ``quota_bytes`` bytes
    of envelopes. With ``skip_full`` (a group message) a device whose mailbox is full (its
    ``quota`` of messages, or an envelope that would take it past ``quota_bytes``), or that was
    unlinked meanwhile, is left out instead, and the others are stored: one member cannot block
    a group. The store reports which messages it left out.

    ``blobs`` (the blob ids the message announces) are granted, in the same atomic step, to
    every device whose message is stored, and to no other: a refused send grants nothing. That
    step also finds each of them still recorded, or refuses the whole send
    (:class:`BlobGoneError`): a blob deleted after the relay checked it is never granted.

    An envelope byte-identical to one still in the recipient's mailbox is that message again
    (its ratchet header and nonce make every message's bytes unique): it is not stored twice,
    even into a full mailbox, so a send retried after an unclear failure is idempotent (and
    counts as stored).
    """

    messages: Sequence[Outgoing]
    sender: tuple[str, int]
    now: float
    quota: int
    quota_bytes: int
    skip_full: bool = False
    blobs: Sequence[bytes] = ()


Skipped = tuple[int, ...]
"""The positions in :attr:`Enqueue.messages` of the messages a ``skip_full`` write left out,
ascending (empty when it stored them all)."""


class Enqueued(NamedTuple):
    """What :meth:`RelayStore.enqueue` did with an :class:`Enqueue`."""

    skipped: Skipped = ()
    """The messages it left out."""
    seqs: tuple[tuple[int, int], ...] = ()
    """(position, seq) of each message it stored anew (a retry of a stored one has none),
    ascending, from a store whose seqs count each device's messages one by one (Redis): then
    seq - 1 is the device's message before it. Empty from a store whose seqs are not
    contiguous per device (SQLite)."""


class Acknowledge(NamedTuple):
    """Delete messages a device has stored."""

    account: str
    device_id: int
    seqs: Sequence[int]


MailboxWrite = Enqueue | Acknowledge


@dataclass(frozen=True, slots=True)
class GroupRoute:
    """A group's routing copy: who is in it and who may change it, at a version, with the
    admin device's signed routing statement (``body``, ``signature``) it came from."""

    group_id: bytes
    version: int
    members: tuple[str, ...]
    admins: tuple[str, ...]
    body: bytes
    signature: bytes


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


LINK_IN_USE = "lookup"
""":meth:`RelayStore.offer_link`'s refusal: another offer waits under the same lookup."""
LINKS_OF_ACCOUNT = "account"
""":meth:`RelayStore.offer_link`'s refusal: the account has its most offers waiting."""


class RelayBlobIndex(BlobIndex, Protocol):
    """The relay's record of its blobs, and which devices may fetch each (DESIGN §14).

    A blob is granted to the devices for which the ``send`` (or ``group_send``) that announces
    it is stored, by the store's :meth:`RelayStore.enqueue` (:attr:`Enqueue.blobs`); it is
    deleted once every granted device said it fetched it, or when its TTL passes.
    """

    async def may_download(self, blob_id: bytes, account: str, device_id: int) -> bool:
        """Whether the blob was granted to that device."""
        ...

    async def mark_fetched(self, blob_id: bytes, account: str, device_id: int) -> bool | None:
        """Record that the device has the blob: None if it was not granted to it, else whether
        every device it was granted to has it now (then the caller deletes it)."""
        ...


class RelayStore(Protocol):
    """What the relay needs from storage.

    A store that cannot be reached or written raises
    :class:`~server.common.store_base.StoreUnavailableError` and has changed nothing.
    """

    blobs: RelayBlobIndex
    """Blob metadata and grants (the bytes are files under ``--blob-dir``, which the nodes of a
    Redis store share: :mod:`server.common.blobs`)."""
    federation: RelayFederationStore
    """Account links, the sharing log, items for the social server and the accounts that
    take cross-transport chats (:mod:`server.federation.relay_store`)."""

    def limits(self, config: RelayConfig) -> RelayLimits:
        """The limits that protect users (registrations, prekey bundles), as ``config`` sets
        them, counted once for every relay process on this store (:mod:`server.relay.limits`)."""
        ...

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

    async def link_signatures(self, account: str) -> dict[int, bytes]:
        """The link signature of each linked device of ``account`` that has one stored."""
        ...

    async def set_link_signature(self, account: str, device_id: int, signature: bytes
                                 ) -> None:
        """Store a linked device's (checked) link signature: for devices linked before the
        relay kept them, which send it again (a device not listed: nothing happens)."""
        ...

    async def touch(self, account: str, device_id: int, now: float) -> None:
        """Record that a device authenticated at ``now``."""
        ...

    async def store_prekeys(self, account: str, device_id: int,
                            signed: tuple[int, bytes, bytes] | None,
                            one_time: Sequence[tuple[int, bytes]], *, limit: int) -> int:
        """Set the signed prekey (if given) and add one-time prekeys (an id given again replaces
        its key); returns the OPK count.

        :class:`PrekeyLimitError` (nothing stored) when the OPKs held plus those given would be
        more than ``limit``, counted in the same atomic step that writes: writes from several
        connections of one device never pass it together. A device not listed: nothing
        happens, and the count is 0.
        """
        ...

    async def one_time_prekey_count(self, account: str, device_id: int) -> int:
        """How many one-time prekeys the relay holds for the device."""
        ...

    async def take_bundle(self, account: str, device_id: int, one_time: bool = True
                          ) -> tuple[Bundle, int] | None:
        """The device's bundle with its lowest-id OPK (none when not ``one_time``), which is
        deleted in the same atomic step, and how many OPKs it has left; None without a signed
        prekey."""
        ...

    async def enqueue(self, write: Enqueue) -> Enqueued:
        """Store one send durably, all or nothing (or, with ``skip_full``, all that fit), and
        grant its ``blobs`` to the devices it stored it for, in the same atomic step; the
        messages left out (none without ``skip_full``) and, from a store whose seqs count each
        device's messages one by one, the seqs of the messages stored anew.

        :class:`QuotaExceededError` for a full mailbox, :class:`DeviceGoneError` for a recipient
        removed from its account meanwhile, :class:`BlobGoneError` for a blob deleted
        meanwhile; each stores and grants nothing. The quota is
        checked in the same atomic step that inserts, against the device's usage counters
        (messages and bytes stored, kept by every insert and delete). Nothing is visible, and
        the caller must answer nothing, before this returns.
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

    async def group(self, group_id: bytes) -> GroupRoute | None:
        """The routing copy of a group."""
        ...

    async def put_group(self, route: GroupRoute, account: str, limit: int) -> None:
        """Store a routing copy, put by ``account``; compared, counted and written atomically.

        :class:`StaleGroupError` unless its version is newer than the stored one. A new group
        id makes ``account`` its creator; :class:`GroupLimitError` when the creator has
        ``limit`` routing copies stored already (an update of a stored copy is never refused
        for it). A copy with no members is not kept: the stored one is deleted and no longer
        counts for its creator. A refusal changes nothing.
        """
        ...

    async def offer_link(self, lookup: bytes, link: PendingLink, ttl: float,
                         per_account: int) -> str | None:
        """File a pending link under ``lookup`` for at most ``ttl`` seconds; None, or what
        refused it (nothing changed): :data:`LINK_IN_USE`, or :data:`LINKS_OF_ACCOUNT` when
        ``per_account`` offers to ``link.account`` wait already."""
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

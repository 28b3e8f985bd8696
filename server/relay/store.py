"""What the relay needs from storage: the :class:`RelayStore` interface and its records.

Relay logic calls only :class:`RelayStore`; no SQL lives there, so another backend (Redis
mailboxes and pub/sub, DESIGN §10) is a sibling module of :mod:`server.relay.sqlite_store`.
Every method that changes state commits before it returns: a send is acknowledged only once it
is on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..common.blob_index import BlobIndex
from ..common.store_base import Bundle
from ..federation.relay_store import RelayFederationStore


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


class StaleListError(Exception):
    """A device list older than the stored one."""


class StaleGroupError(Exception):
    """A group routing copy not newer than the stored one."""


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
    a group.
    """

    messages: Sequence[Outgoing]
    sender: tuple[str, int]
    now: float
    quota: int
    quota_bytes: int
    skip_full: bool = False


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


class RelayBlobIndex(BlobIndex, Protocol):
    """The relay's record of its blobs, and which devices may fetch each (DESIGN §14).

    A blob is granted to the recipient devices of the ``send`` that announces it; it is deleted
    once every granted device said it fetched it, or when its TTL passes.
    """

    def grant_blobs(self, blob_ids: Sequence[bytes], devices: Sequence[tuple[str, int]]) -> None:
        """Let each of ``devices`` (account, device id) download each blob."""
        ...

    def may_download(self, blob_id: bytes, account: str, device_id: int) -> bool:
        """Whether the blob was granted to that device."""
        ...

    def mark_fetched(self, blob_id: bytes, account: str, device_id: int) -> bool | None:
        """Record that the device has the blob: None if it was not granted to it, else whether
        every device it was granted to has it now (then the caller deletes it)."""
        ...


class RelayStore(Protocol):
    """What the relay needs from storage."""

    blobs: RelayBlobIndex
    """Blob metadata (the bytes are files: :mod:`server.common.blobs`)."""
    federation: RelayFederationStore
    """Account links, the sharing log, items for the social server and the accounts that
    take cross-transport chats (:mod:`server.federation.relay_store`: nine methods)."""

    def create_account(self, account: str, account_key: bytes, list_version: int,
                       list_body: bytes, list_signature: bytes,
                       devices: dict[int, bytes], now: float) -> None:
        """Register a new account; :class:`NameTakenError` if the name exists."""
        ...

    def account(self, account: str) -> AccountRecord | None:
        """The account's key and device list."""
        ...

    def replace_device_list(self, account: str, list_version: int, list_body: bytes,
                            list_signature: bytes, devices: dict[int, bytes],
                            added: Sequence[NewDevice], now: float) -> list[int]:
        """Store a newer device list (and its new devices); returns removed device ids.

        Removing a device deletes its prekeys and its mailbox. :class:`StaleListError` when
        the version is not newer than the stored one.
        """
        ...

    def device_info(self, account: str) -> list[DeviceInfo]:
        """Name, link time and last authentication of each device of ``account``."""
        ...

    def link_signatures(self, account: str) -> dict[int, bytes]:
        """The link signature of each linked device of ``account`` that has one stored."""
        ...

    def set_link_signature(self, account: str, device_id: int, signature: bytes) -> None:
        """Store a linked device's (checked) link signature: for devices linked before the
        relay kept them, which send it again."""
        ...

    def touch(self, account: str, device_id: int, now: float) -> None:
        """Record that a device authenticated at ``now``."""
        ...

    def store_prekeys(self, account: str, device_id: int,
                      signed: tuple[int, bytes, bytes] | None,
                      one_time: Sequence[tuple[int, bytes]]) -> int:
        """Set the signed prekey (if given) and add one-time prekeys; returns the OPK count."""
        ...

    def one_time_prekey_count(self, account: str, device_id: int) -> int:
        """How many one-time prekeys the relay holds for the device."""
        ...

    def take_bundle(self, account: str, device_id: int, one_time: bool = True
                    ) -> tuple[Bundle, int] | None:
        """The device's bundle with one OPK (none when not ``one_time``), which is deleted in
        the same transaction, and how many OPKs it has left."""
        ...

    def write_mailboxes(self, writes: Sequence[MailboxWrite]) -> list[Exception | None]:
        """Apply many sends and acknowledgements with one durable commit (group commit).

        Each write is all-or-nothing on its own; the result list holds, per write, None or
        the error that undid it (:class:`QuotaExceededError`). Nothing is visible, and the
        caller must answer nothing, before this returns.
        """
        ...

    def pending(self, account: str, device_id: int, after_seq: int, limit: int
                ) -> list[Delivery]:
        """Stored messages for the device with seq > ``after_seq``, oldest first."""
        ...

    def expire(self, older_than: float) -> int:
        """Delete messages stored before ``older_than``; returns how many."""
        ...

    def group(self, group_id: bytes) -> GroupRoute | None:
        """The routing copy of a group."""
        ...

    def put_group(self, route: GroupRoute) -> None:
        """Store a routing copy; :class:`StaleGroupError` unless its version is newer than the
        stored one (compared and written atomically)."""
        ...


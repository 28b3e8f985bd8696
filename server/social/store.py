"""What the social server needs from storage: the :class:`SocialStore` interface and records.

Social logic calls only :class:`SocialStore`; the SQLite default
(:mod:`server.social.sqlite_store`) keeps everything in one file, separate from the relay's.
Every method that changes state commits before it returns, so a request is answered ``ok`` only
once its effect is on disk.

What reaches devices is one ordered log, ``events``: a message, a reaction change, a pin change,
a conversation made secret, a group created. A device reads the events of its account's
conversations after its cursor and moves the cursor by acknowledging.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..common.blob_index import BlobIndex
from ..common.store_base import Bundle
from ..federation.social_store import SocialFederationStore
from .profile_store import SocialProfileStore

DIRECT = "direct"
GROUP = "group"


class ClientIdReusedError(Exception):
    """A send repeats a client_id its sender already used in another conversation."""


class NameTakenError(Exception):
    """The name belongs to an account or a group already."""


class KeyChangedError(Exception):
    """A device tried to publish an identity key other than the one it published first."""


class NoPrekeysError(Exception):
    """A device has published no signed prekey, so it has no bundle to hand out."""

    def __init__(self, device_id: int) -> None:
        super().__init__(f"device {device_id} has no signed prekey")
        self.device_id = device_id


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation: one to one (``direct``) or a named group, with its members."""

    id: int | None  # None: a direct conversation that has no message yet
    kind: str
    name: str | None  # the group's name; None for a direct conversation
    members: tuple[str, ...]
    secret: bool = False

    def title_for(self, account: str) -> str:
        """The conversation's name as ``account`` sees it: the group or the other account."""
        if self.kind == GROUP:
            assert self.name is not None
            return self.name
        return next((m for m in self.members if m != account), account)


class Device(NamedTuple):
    """A logged-in device, as found by its session token."""

    account: str
    device_id: int
    expires: float


class DeviceInfo(NamedTuple):
    """What the server knows of one of an account's devices besides its keys (times are
    seconds since the Unix epoch; None for a device from before they were recorded)."""

    device_id: int
    created: float | None
    last_seen: float | None
    expires: float


class DeviceKeys(NamedTuple):
    """A device's published identity key (None until it publishes prekeys)."""

    device_id: int
    identity_key: bytes | None


class Message(NamedTuple):
    """A stored message; ``text`` is None in a secret conversation."""

    id: int
    conversation: int
    sender: str
    device_id: int
    ts: int
    text: str | None
    secret: bool


class Event(NamedTuple):
    """One entry of the delivery log, as seen by one device.

    ``kind`` is ``message``, ``reaction``, ``pin``, ``unpin``, ``secret`` or ``group``;
    ``account``/``device_id`` did it. For ``message``, ``text`` or (secret) ``envelope`` is the
    content for the reading device; for ``reaction``, ``emoji`` is None when it was removed.
    """

    seq: int
    kind: str
    conversation: int
    message: int | None
    account: str
    device_id: int
    ts: int
    emoji: str | None
    text: str | None
    secret: bool
    envelope: bytes | None


class SocialStore(Protocol):
    """What the social server needs from storage."""

    blobs: BlobIndex
    """Blob metadata (the bytes are files: :mod:`server.common.blobs`). A blob may be
    downloaded by the members of every conversation a message announcing it was sent in
    (:meth:`may_download`), for as long as its TTL: history keeps it for devices to come."""
    profiles: SocialProfileStore
    """Profiles and status updates (:mod:`server.social.profile_store`)."""
    federation: SocialFederationStore
    """Cross identities, account links and shared records (:mod:`server.federation.
    social_store`)."""

    def close(self) -> None:
        """Release the store."""
        ...

    def create_account(self, name: str, password_hash: bytes, now: float) -> None:
        """Create an account; :class:`NameTakenError` when an account or group has the name."""
        ...

    def password_hash(self, name: str) -> bytes | None:
        """The stored Argon2id hash of ``name``'s password, None for an unknown account."""
        ...

    def account_exists(self, name: str) -> bool:
        """Whether an account named ``name`` exists."""
        ...

    def add_device(self, account: str, token_hash: bytes, expires: float, now: float) -> int:
        """A new device of ``account`` with this token, created (and seen) ``now``; its cursor
        starts at the log's end."""
        ...

    def device_by_token(self, token_hash: bytes) -> Device | None:
        """The device logged in with this token (hash), expired or not."""
        ...

    def touch_device(self, account: str, device_id: int, now: float) -> None:
        """Record that a device logged in (with its token) at ``now``."""
        ...

    def device_info(self, account: str) -> list[DeviceInfo]:
        """Every device of ``account``: id, creation, last login and token expiry."""
        ...

    def remove_device(self, account: str, device_id: int) -> bool:
        """Revoke a device: its token, keys and envelopes are deleted (its id is never used
        again); False when ``account`` has no such device."""
        ...

    def devices(self, account: str) -> list[DeviceKeys]:
        """Every logged-in device of ``account`` and the identity key it published."""
        ...

    def publish_prekeys(self, account: str, device_id: int, identity_key: bytes,
                        signed_prekey: tuple[int, bytes, bytes] | None,
                        one_time_prekeys: Sequence[tuple[int, bytes]]) -> int:
        """Keep a device's keys; :class:`KeyChangedError` for a second, different identity.

        Returns how many one-time prekeys the device has on the server.
        """
        ...

    def take_bundles(self, account: str, device_ids: Sequence[int],
                     one_time: Collection[int]) -> list[Bundle]:
        """The devices' bundles, each one-time prekey handed out (deleted) once; only the
        devices in ``one_time`` get one.

        :class:`NoPrekeysError` (and nothing deleted) when one of them has no signed prekey.
        """
        ...

    def direct(self, a: str, b: str, create: bool) -> Conversation:
        """The one-to-one conversation of ``a`` and ``b`` (made when ``create``)."""
        ...

    def group(self, name: str) -> Conversation | None:
        """The group named ``name``."""
        ...

    def conversation(self, conversation_id: int) -> Conversation | None:
        """A conversation by id."""
        ...

    def create_group(self, name: str, members: Sequence[str], creator: str, device_id: int,
                     ts: int) -> Conversation:
        """A new group; :class:`NameTakenError` when an account or group has the name."""
        ...

    def add_members(self, conversation_id: int, members: Sequence[str], account: str,
                    device_id: int, ts: int) -> Conversation:
        """Add members to a group."""
        ...

    def remove_member(self, conversation_id: int, member: str, account: str, device_id: int,
                      ts: int) -> Conversation:
        """Remove ``member`` from a group (``account`` did it; itself when leaving)."""
        ...

    def rename_group(self, conversation_id: int, name: str, account: str, device_id: int,
                     ts: int) -> Conversation:
        """Rename a group; :class:`NameTakenError` when an account or group has the name."""
        ...

    def set_secret(self, conversation_id: int, account: str, device_id: int, ts: int) -> None:
        """Switch a conversation to end-to-end encrypted mode, for good."""
        ...

    def add_message(self, conversation_id: int, sender: str, device_id: int, ts: int,
                    text: str | None, envelopes: Sequence[tuple[str, int, bytes]],
                    client_id: bytes | None = None, media: bytes | None = None,
                    blobs: Sequence[bytes] = ()) -> int:
        """Store a message (plaintext ``text`` and/or ``media``, or per-device ``envelopes``
        when both are None); its id. The message announces ``blobs``: the conversation's
        members may download them.

        ``media`` is a plaintext message's media fields, msgpack-encoded. A ``client_id`` the
        sender used before returns that message's id and stores nothing: a resend after a lost
        answer is not a second message.
        """
        ...

    def media(self, message_ids: Sequence[int]) -> dict[int, bytes]:
        """The encoded media fields of those messages that have them."""
        ...

    def may_download(self, blob_id: bytes, account: str) -> bool:
        """Whether ``account`` is a member of a conversation a message announced the blob in."""
        ...

    def message(self, message_id: int) -> Message | None:
        """A message by id."""
        ...

    def set_reaction(self, message: Message, account: str, device_id: int,
                     emoji: str | None, ts: int) -> bool:
        """Set (or with None remove) ``account``'s reaction; False when nothing changed."""
        ...

    def set_pinned(self, message: Message, account: str, device_id: int, pinned: bool,
                   ts: int) -> bool:
        """Pin or unpin a message; False when it already was so."""
        ...

    def pins(self, conversation_id: int) -> list[Message]:
        """Pinned messages of a conversation, oldest message first."""
        ...

    def history(self, conversation_id: int, before: int | None, limit: int) -> list[Message]:
        """Up to ``limit`` messages before id ``before`` (or the newest), oldest first."""
        ...

    def reactions(self, message_ids: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
        """``[(account, emoji), ...]`` per message id."""
        ...

    def pinned(self, message_ids: Sequence[int]) -> set[int]:
        """Which of these messages are pinned."""
        ...

    def search(self, account: str, query: str, limit: int) -> list[Message]:
        """Plaintext messages of ``account``'s conversations matching every word, newest first."""
        ...

    def events(self, account: str, device_id: int, after: int, limit: int) -> list[Event]:
        """Events of ``account``'s conversations after ``after``, in order."""
        ...

    def cursor(self, account: str, device_id: int) -> int:
        """The last event the device acknowledged."""
        ...

    def acknowledge(self, account: str, device_id: int, seq: int) -> None:
        """Move the device's cursor forward to ``seq`` (never back, never past the log)."""
        ...

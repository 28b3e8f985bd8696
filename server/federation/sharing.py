"""The relay's one sharing path: a :class:`~e2e_proto.account_link.SharedRecord`, and nothing
else, goes to the social server, and only for a live account link.

The private client holds its profile and status updates in the clear (the relay holds them
only as ciphertext); when the account is linked, its client hands the relay the allow-listed
part of them (``share_update``: display name, about, live status updates), read here into the
allow-listed types and nothing more. The relay adds what it knows itself (the account's name,
when it was linked, its devices' names and last sight) and queues the record for the social
server (:func:`queue_share`), which the pump delivers in order; the sharing log records what
arrived and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.account_link import (
    SharedAccount,
    SharedDevice,
    SharedProfile,
    SharedRecord,
    SharedStatus,
)
from e2e_proto.constants import MAX_SHARED_DEVICE_NAME_LENGTH, MAX_STATUSES, STATUS_TTL_MS
from e2e_proto.errors import LocalProtocolError

from ..common.requests import RequestError
from .relay_store import SHARE, StoredLink

if TYPE_CHECKING:
    from ..relay.server import Relay


def shared_profile(frame: dict[str, Any]) -> tuple[SharedProfile, tuple[SharedStatus, ...]]:
    """A request's ``profile`` (``[display_name, about]``) and ``statuses`` (``[[text,
    posted_ms], ...]``, at most 30) as the allow-listed types; ``bad_request`` otherwise."""
    profile, statuses = frame.get("profile", ["", ""]), frame.get("statuses", [])
    try:
        if type(statuses) is not list or len(statuses) > MAX_STATUSES:
            raise ValueError
        display_name, about = profile  # type: ignore[misc]
        return (SharedProfile(display_name, about),
                tuple(SharedStatus(text, posted) for text, posted in statuses))
    except (ValueError, TypeError, LocalProtocolError) as exc:
        raise RequestError(api.BAD_REQUEST, f"profile or statuses refused: {exc}") from None


def _device_name(name: str) -> str:
    """A device name as shared: printable, at most 64 characters."""
    return "".join(c if c.isprintable() else "?" for c in name)[:MAX_SHARED_DEVICE_NAME_LENGTH]


async def build_record(relay: Relay, link: StoredLink, profile: SharedProfile,
                       statuses: Sequence[SharedStatus]) -> SharedRecord:
    """The record of ``link``'s account now: account info and devices from the relay's own
    records, the profile and the status updates still live (newest first) from the client."""
    now_ms = int(relay.clock() * 1000)
    live = sorted((s for s in statuses if 0 <= now_ms - s.posted_ms < STATUS_TTL_MS),
                  key=lambda s: s.posted_ms, reverse=True)[:MAX_STATUSES]
    devices = tuple(SharedDevice(_device_name(info.name),
                                 None if info.last_seen is None else int(info.last_seen * 1000))
                    for info in await relay.store.device_info(link.account))
    return SharedRecord(SharedAccount(link.account, int(link.linked_at * 1000)), profile,
                        tuple(live), devices)


def summary(record: SharedRecord) -> str:
    """What a record holds, without its content (kept after the link ends)."""
    parts = [name for name, value in (("display name", record.profile.display_name),
                                      ("about", record.profile.about)) if value]
    parts.append(f"{len(record.statuses)} status update(s)")
    parts.append(f"{len(record.devices)} device(s) with names and last seen")
    return "account name, link time, " + ", ".join(parts)


async def queue_share(relay: Relay, link: StoredLink, record: SharedRecord) -> None:
    """Queue ``record`` for the social server: the sharing path's only entrance.

    Only a :class:`SharedRecord` (its exact type) is taken, and only its own encoding is
    queued; the pump re-reads it before it leaves (:func:`outgoing_record`).
    """
    if type(record) is not SharedRecord:
        raise TypeError("only a SharedRecord may be shared")
    await relay.store.federation.queue_for_peer(link.account, SHARE, link.link_id,
                                                record.encode())
    if relay.federation is not None:
        relay.federation.wake_pump()


def outgoing_record(body: bytes) -> bytes:
    """A queued record as it leaves: decoded into the allow-listed type and encoded again, so
    that nothing but its fields can cross even from a damaged queue."""
    return SharedRecord.decode(body).encode()

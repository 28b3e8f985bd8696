"""Relay requests on mailboxes: ``send`` (fan-out checked against the device lists) and
``ack`` (delete what a device has committed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address

from ..common.blob_requests import NOT_UPLOADED
from ..common.fields import SentEnvelope, sent_envelopes
from ..common.requests import RequestError
from .blobs import announced_blobs
from .fields import account_field, require_field
from .store import (
    Acknowledge,
    BlobGoneError,
    Delivery,
    DeviceGoneError,
    Enqueue,
    Outgoing,
    QuotaExceededError,
)

if TYPE_CHECKING:
    from .connection import RelayConnection
    from .server import Relay


async def send(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store one envelope per device of the recipient and of the sender's other devices, and
    let those devices download the blobs the message announces (``blobs``)."""
    assert conn.address is not None
    me = conn.address
    to = account_field(frame, "to")
    decoded = envelopes_field(conn, frame, api.MAX_SEND_ENVELOPES)
    blob_ids = await announced_blobs(conn, frame)
    recipient = await conn.relay.store.account(to)
    if recipient is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {to!r}")
    own = await conn.relay.store.account(me.account)
    assert own is not None
    expected = {Address(to, d) for d in recipient.devices}
    expected |= {Address(me.account, d) for d in own.devices}
    expected.discard(me)  # a device never sends to itself (a note to conn goes to the others)
    outgoing = [Outgoing(*envelope.recipient, data) for envelope, data in decoded]
    addressed = {Address(m.account, m.device_id) for m in outgoing}
    if len(addressed) != len(outgoing) or addressed != expected:
        missing = sorted(expected - addressed)
        stale = sorted(addressed - expected)
        raise RequestError(api.DEVICE_MISMATCH,
                           "the send must cover exactly the current devices",
                           missing=[list(a) for a in missing],
                           stale=[list(a) for a in stale])
    await store_mail(conn.relay, enqueue(conn, outgoing, blobs=blob_ids))
    return {"stored": len(outgoing)}


def envelopes_field(conn: RelayConnection, frame: dict[str, Any], most: int
                    ) -> list[SentEnvelope]:
    """The request's ``envelopes``: at most ``most`` (``bad_request``, before any is read),
    each from this device and at most the relay's largest envelope (``message_too_large``):
    what one device's mailbox stores per message, from any request."""
    assert conn.address is not None
    return sent_envelopes(frame.get("envelopes"), conn.address, most,
                          conn.relay.config.max_envelope_size, code=api.BAD_REQUEST,
                          too_large=api.MESSAGE_TOO_LARGE)


def enqueue(conn: RelayConnection, outgoing: list[Outgoing], skip_full: bool = False,
            blobs: list[bytes] | None = None) -> Enqueue:
    """Store ``outgoing`` from this device within the relay's mailbox quotas (messages and
    bytes per device), granting ``blobs`` to the devices it is stored for; with ``skip_full``
    a full mailbox is left out instead of refusing all."""
    assert conn.address is not None
    config = conn.relay.config
    return Enqueue(outgoing, (conn.address.account, conn.address.device_id), conn.relay.clock(),
                   config.mailbox_quota, config.mailbox_quota_bytes, skip_full, blobs or ())


async def store_mail(relay: Relay, write: Enqueue) -> list[Address]:
    """Store ``write`` (and grant its blobs) and wake the devices it stored mail for, handing
    each message the store numbered to this node's connections of its device; the devices it
    left out (only with ``skip_full``: a full mailbox, a device unlinked meanwhile).

    A send refused whole stores and grants nothing: ``quota_exceeded``, ``device_mismatch``
    naming as ``stale`` a recipient unlinked while the send waited for its commit, or
    ``unknown_blob`` for a blob deleted since it was checked (its last granted device fetched
    it, or its TTL passed).
    """
    try:
        skipped, seqs = await relay.store.enqueue(write)
    except QuotaExceededError as exc:
        raise RequestError(api.QUOTA_EXCEEDED, str(exc)) from None
    except DeviceGoneError as exc:
        raise RequestError(api.DEVICE_MISMATCH,
                           "the send must cover exactly the current devices", missing=[],
                           stale=[[exc.account, exc.device_id]]) from None
    except BlobGoneError:  # deleted since announced_blobs checked it
        raise RequestError(api.UNKNOWN_BLOB, NOT_UPLOADED) from None
    messages = write.messages
    addresses = [Address(m.account, m.device_id) for m in messages]
    left_out = set(skipped)
    new = dict(seqs)
    relay.mail_stored((a, Delivery(new[i], messages[i].envelope) if i in new else None)
                      for i, a in enumerate(addresses) if i not in left_out)
    return [addresses[i] for i in skipped]


async def ack(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Delete messages the device has committed."""
    assert conn.address is not None
    seqs = require_field(frame, "seqs", list)
    if len(seqs) > api.MAX_ACK_SEQS:
        raise RequestError(api.BAD_REQUEST, f"an ack lists at most {api.MAX_ACK_SEQS} seqs; "
                           "send several")
    if not all(type(s) is int and 0 < s < 2**63 for s in seqs):
        raise RequestError(api.BAD_REQUEST, "seqs must be positive 63-bit integers")
    await conn.relay.store.acknowledge(
        Acknowledge(conn.address.account, conn.address.device_id, seqs))
    return {}


async def ping(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Answer, doing nothing (keep-alive and round-trip check)."""
    return {}

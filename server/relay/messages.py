"""Relay requests on mailboxes: ``send`` (fan-out checked against the device lists) and
``ack`` (delete what a device has committed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.errors import E2EProtoError
from e2e_proto.wire import Envelope

from ..common.requests import RequestError
from .blobs import announced_blobs, grant
from .fields import account_field, require_field
from .store import Acknowledge, DeviceGoneError, Enqueue, Outgoing, QuotaExceededError

if TYPE_CHECKING:
    from .connection import RelayConnection


async def send(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store one envelope per device of the recipient and of the sender's other devices, and
    let those devices download the blobs the message announces (``blobs``)."""
    assert conn.address is not None
    me = conn.address
    to = account_field(frame, "to")
    raw = require_field(frame, "envelopes", list)
    blob_ids = await announced_blobs(conn, frame)
    recipient = await conn.relay.store.account(to)
    if recipient is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {to!r}")
    own = await conn.relay.store.account(me.account)
    assert own is not None
    expected = {Address(to, d) for d in recipient.devices}
    expected |= {Address(me.account, d) for d in own.devices}
    expected.discard(me)  # a device never sends to itself (a note to conn goes to the others)
    outgoing = []
    for data in raw:
        if type(data) is bytes:
            check_envelope_size(conn, len(data))
        try:
            envelope = Envelope.decode(data)  # type: ignore[arg-type]
        except E2EProtoError as exc:
            raise RequestError(api.BAD_REQUEST, f"envelope refused: {exc}") from None
        if envelope.sender != me:
            raise RequestError(api.BAD_REQUEST, "envelope sender is not this device")
        outgoing.append(Outgoing(*envelope.recipient, data))
    addressed = {Address(m.account, m.device_id) for m in outgoing}
    if len(addressed) != len(outgoing) or addressed != expected:
        missing = sorted(expected - addressed)
        stale = sorted(addressed - expected)
        raise RequestError(api.DEVICE_MISMATCH,
                           "the send must cover exactly the current devices",
                           missing=[list(a) for a in missing],
                           stale=[list(a) for a in stale])
    await grant(conn, blob_ids, addressed)
    try:
        await conn.relay.store.enqueue(enqueue(conn, outgoing))
    except QuotaExceededError as exc:
        raise RequestError(api.QUOTA_EXCEEDED, str(exc)) from None
    except DeviceGoneError as exc:  # unlinked while this send waited for its commit
        raise RequestError(api.DEVICE_MISMATCH,
                           "the send must cover exactly the current devices", missing=[],
                           stale=[[exc.account, exc.device_id]]) from None
    conn.relay.mail_stored(addressed)
    return {"stored": len(outgoing)}


def check_envelope_size(conn: RelayConnection, size: int, what: str = "an envelope") -> None:
    """Refuse an envelope of ``size`` bytes over the relay's largest (``message_too_large``,
    with ``limit``): what one device's mailbox stores per message, from any request."""
    limit = conn.relay.config.max_envelope_size
    if size > limit:
        raise RequestError(api.MESSAGE_TOO_LARGE, f"{what} has at most {limit} bytes (got "
                           f"{size})", limit=limit)


def enqueue(conn: RelayConnection, outgoing: list[Outgoing], skip_full: bool = False
            ) -> Enqueue:
    """Store ``outgoing`` from this device within the relay's mailbox quotas (messages and
    bytes per device); with ``skip_full`` a full mailbox is left out instead of refusing all."""
    assert conn.address is not None
    config = conn.relay.config
    return Enqueue(outgoing, (conn.address.account, conn.address.device_id), conn.relay.clock(),
                   config.mailbox_quota, config.mailbox_quota_bytes, skip_full)


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

"""What the two servers ask each other, and how an envelope's addresses cross the border.

Over the server-to-server link (:mod:`e2e_proto.peer_link`) each server asks the other
requests of the relay's frame shape: ``{id, type, ...}`` answered by ``{id, ok: true, ...}`` or
``{id, error: {code, message}}``. Their types are below; docs/PROTOCOL.md §19.4 lists every
field. The servers exchange only what cross-transport chats and account links need: device
lists and prekey bundles to start sessions, envelopes, link statements, revocations and the
one allow-listed sharing record.

**Addresses at the border.** Each side names an account of the other transport with its
transport after an ``@`` (:func:`~e2e_proto.address.qualify`). The sending server, which
authenticated the sender, rewrites an envelope's two addresses into the receiving side's names
(:func:`to_peer_view`): its own sender becomes ``name@its-transport``, the recipient loses the
receiving side's suffix. The ratchet message (header, nonce, ciphertext) and the X3DH fields
are not touched: neither server can read or change what they protect. The receiving server
checks the result (:func:`check_from_peer`).
"""

from __future__ import annotations

from .address import Address, qualify, split_foreign
from .capabilities import PRIVATE, SOCIAL
from .constants import MAX_DEVICES
from .errors import LocalProtocolError, MalformedError
from .wire import Envelope

# Requests on the server-to-server link (docs/PROTOCOL.md §19.4).
PEER_LINK = "link"  # relay -> social: a link statement to check and keep
PEER_SHARE = "share"  # relay -> social: the shared record of a linked account
PEER_UNLINK = "unlink"  # either way: a signed revocation
PEER_DEVICES = "devices"  # either way: an opted-in account's key and signed device list
PEER_BUNDLES = "bundles"  # either way: prekey bundles of an opted-in account's devices
PEER_DELIVER = "deliver"  # either way: one send's envelopes for an opted-in account
PEER_PING = "ping"

# Error codes a client sees for cross-transport requests (answered by either server).
CROSS_DISABLED = "cross_disabled"
"""The account (the sender's own, or the recipient) has not enabled cross-transport chats."""
PEER_UNAVAILABLE = "peer_unavailable"
"""This server cannot reach the other one now (or has none configured); nothing was sent."""
NOT_LINKED = "not_linked"
"""The account has no live account link (or the link named is not the live one)."""
ALREADY_LINKED = "already_linked"
"""One of the two accounts is linked already: unlink first."""
LINK_REFUSED = "link_refused"
"""A link statement or revocation that does not hold (forged, stale, replayed, not yours)."""

MAX_CROSS_ENVELOPES = 2 * MAX_DEVICES
"""Envelopes in one cross-transport send: the recipient's devices and the sender's others."""


def peer_transport(local: str) -> str:
    """The other transport."""
    if local not in (PRIVATE, SOCIAL):
        raise LocalProtocolError(f"unknown transport {local!r}")
    return SOCIAL if local == PRIVATE else PRIVATE


def to_peer_view(envelope: Envelope, local: str) -> Envelope:
    """``envelope`` (from a device of this transport ``local`` to a foreign device) with its
    addresses as the other transport names them; :class:`LocalProtocolError` otherwise."""
    sender, recipient = envelope.sender, envelope.recipient
    foreign = split_foreign(recipient.account)
    if split_foreign(sender.account) is not None or foreign is None or foreign[1] != (
            peer_transport(local)):
        raise LocalProtocolError("not an envelope from this transport to the other one")
    return envelope._replace(sender=Address(qualify(sender.account, local), sender.device_id),
                             recipient=Address(foreign[0], recipient.device_id))


def check_from_peer(envelope: Envelope, local: str) -> None:
    """Refuse (:class:`MalformedError`) an envelope the other server hands this one unless it
    comes from an account of the other transport and goes to one of this transport ``local``."""
    foreign = split_foreign(envelope.sender.account)
    if (foreign is None or foreign[1] != peer_transport(local)
            or split_foreign(envelope.recipient.account) is not None):
        raise MalformedError("a peer's envelope must come from its transport to this one")

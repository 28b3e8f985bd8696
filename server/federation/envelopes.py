"""The checks both servers make on a cross-transport send's envelopes (none reads them).

A client's ``cross_send`` holds envelopes for its own account's other devices (kept by its own
server, as any message) and for the other transport's recipient devices (handed over the
server-to-server link): :func:`split_send`. The other server's ``deliver`` holds envelopes for
one local account's devices from one foreign device: :func:`check_delivery`. Both bound counts
and sizes and refuse (``device_mismatch``, with the missing and stale devices) a set of
envelopes that is not exactly the devices it must reach.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, split_foreign
from e2e_proto.errors import E2EProtoError
from e2e_proto.federation import MAX_CROSS_ENVELOPES, check_from_peer
from e2e_proto.social_api import MAX_ENVELOPE_BYTES
from e2e_proto.wire import Envelope

from ..common.fields import SentEnvelope, sent_envelopes
from ..common.requests import RequestError

Stored = tuple[str, int, bytes]
"""``(account, device_id, envelope bytes)``: one envelope to keep for one local device."""


def _decode(raw: object, sender: Address) -> list[SentEnvelope]:
    decoded = sent_envelopes(raw, sender, MAX_CROSS_ENVELOPES, MAX_ENVELOPE_BYTES,
                             code=api.BAD_REQUEST, too_large=api.BAD_REQUEST)
    if not decoded:
        raise RequestError(api.BAD_REQUEST, f"envelopes must be a list of 1 to "
                           f"{MAX_CROSS_ENVELOPES}")
    return decoded


def _check_cover(addressed: list[Address], expected: set[Address],
                 names: dict[str, str] | None = None) -> None:
    found = set(addressed)
    if len(found) != len(addressed) or found != expected:
        shown = names or {}
        raise RequestError(api.DEVICE_MISMATCH, "the send must cover exactly the current "
                           "devices", missing=[[shown.get(a, a), d] for a, d in
                                               sorted(expected - found)],
                           stale=[[shown.get(a, a), d] for a, d in sorted(found - expected)])


def split_send(raw: object, me: Address, own_devices: Collection[int],
               foreign: str) -> tuple[list[Stored], list[Envelope]]:
    """A client's cross-transport envelopes: those for this account's other devices (which
    must be exactly ``own_devices`` but ``me``), and those for the foreign account ``foreign``
    (``name@transport``; the other server checks which of its devices they reach)."""
    own: list[Stored] = []
    others: list[Envelope] = []
    for envelope, data in _decode(raw, me):
        if envelope.recipient.account == foreign:
            others.append(envelope)
        elif envelope.recipient.account == me.account:
            own.append((*envelope.recipient, data))
        else:
            raise RequestError(api.BAD_REQUEST, "an envelope goes to neither the recipient "
                               "nor this account")
    if not others:
        raise RequestError(api.BAD_REQUEST, "no envelope for the recipient")
    _check_cover([Address(a, d) for a, d, _ in own],
                 {Address(me.account, d) for d in own_devices} - {me})
    if len({e.recipient for e in others}) != len(others):
        raise RequestError(api.BAD_REQUEST, "two envelopes for one recipient device")
    return own, others


def check_delivery(raw: object, sender: Address, recipient: str, devices: Collection[int],
                   local: str) -> list[Stored]:
    """The other server's envelopes from the foreign device ``sender`` to the local account
    ``recipient``, which must reach exactly ``devices`` (this transport is ``local``)."""
    stored: list[Stored] = []
    for envelope, data in _decode(raw, sender):
        try:
            check_from_peer(envelope, local)
        except E2EProtoError as exc:
            raise RequestError(api.BAD_REQUEST, str(exc)) from None
        if envelope.recipient.account != recipient:
            raise RequestError(api.BAD_REQUEST, "an envelope's recipient is not the "
                               "delivery's")
        stored.append((*envelope.recipient, data))
    _check_cover([Address(a, d) for a, d, _ in stored], {Address(recipient, d) for d in devices})
    return stored


def mismatch_details(details: dict[str, Any], qualified: str, name: str) -> dict[str, Any]:
    """The other server's ``device_mismatch`` details with its name for the recipient
    (``name``) as this side's client names it (``qualified``)."""
    def rename(entries: object) -> list[list[Any]]:
        if type(entries) is not list:
            return []
        return [[qualified if e[0] == name else e[0], e[1]] for e in entries[:MAX_CROSS_ENVELOPES]
                if type(e) is list and len(e) == 2]
    return {"missing": rename(details.get("missing")), "stale": rename(details.get("stale"))}


def foreign_name_field(frame: dict[str, Any], field: str, transport: str) -> tuple[str, str]:
    """``(name@transport, name)`` of a request field naming an account of the other
    ``transport``; ``bad_request`` for anything else."""
    value = frame.get(field)
    foreign = split_foreign(value)
    if foreign is None or foreign[1] != transport:
        raise RequestError(api.BAD_REQUEST, f"field {field!r} must name a {transport} account "
                           f"(name@{transport})")
    assert isinstance(value, str)
    return value, foreign[0]

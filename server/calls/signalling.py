"""Call signalling as both servers answer it, once they have checked who may start or join
(:mod:`server.relay.calls`, :mod:`server.social.calls`; docs/PROTOCOL.md §18.2).

A server offers :class:`CallServer` (its registry and a way to push to every connection of
some accounts); a connection offers :class:`CallConnection` (its address and a push queue).
Notices go to the participants' joining connections (``call_joined``, ``call_left``,
``call_keys``, ``call_signal``) or to every device of the invited accounts (``call_ring``,
``call_ended``). Pushes never wait, so one slow participant cannot hold a request up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from e2e_proto import call_api as api
from e2e_proto.address import Address

from ..common.fields import sent_envelopes
from ..common.requests import RequestError
from .registry import Call, CallParticipant, CallRefused, CallRegistry, NotParticipantError

BAD_REQUEST = "bad_request"  # both servers' code for a malformed request


class CallConnection(Protocol):
    """An authenticated connection as call signalling sees it."""

    address: Address | None

    def push(self, frame: dict[str, Any]) -> None:
        """Queue a push frame without waiting."""
        ...


class CallServer(Protocol):
    """A signalling server as call signalling sees it."""

    calls: CallRegistry

    def push_to_accounts(self, accounts: Iterable[str], frame: dict[str, Any]) -> None:
        """Queue ``frame`` to every connection of every device of ``accounts``."""
        ...


def refused(exc: CallRefused) -> RequestError:
    """The error frame of a refusal (the code is the same on both servers)."""
    return RequestError(exc.code, str(exc), **exc.details)


def get_call(server: CallServer, frame: dict[str, Any]) -> Call:
    """The call the request's ``call_id`` names; ``unknown_call`` when none."""
    try:
        return server.calls.get(frame.get("call_id"))
    except CallRefused as exc:
        raise refused(exc) from None


def start(server: CallServer, conn: CallConnection, invited: frozenset[str],
          conversation: Any, e2e: bool, ring: dict[str, Any]) -> dict[str, Any]:
    """Start a call that ``invited`` accounts may join, join it, and ring them with ``ring``
    (the call's id and ``participants`` are added); the join answer."""
    assert conn.address is not None
    try:
        call = server.calls.start(conn.address, invited, conversation, e2e)
        answer = join(server, conn, call)
    except CallRefused as exc:
        raise refused(exc) from None
    server.push_to_accounts(call.invited - {conn.address.account},
                            {"type": api.CALL_RING, "call_id": call.call_id,
                             "from": [conn.address.account, conn.address.device_id],
                             "participants": 1, "limit": call.limit, "e2e": e2e, **ring})
    return answer


def join(server: CallServer, conn: CallConnection, call: Call) -> dict[str, Any]:
    """Put the connection's device in ``call`` (again: a new token); the join answer.

    The others hear of a new participant, and in a server-keyed call get the keys that changed.
    """
    assert conn.address is not None
    registry = server.calls
    try:
        participant, new = registry.join(call, conn.address, conn)
    except CallRefused as exc:
        raise refused(exc) from None
    answer = registry.token(call, participant)
    if not call.e2e:
        answer["keys"] = registry.keys_of(call)
    if new:
        _tell(call, {"type": api.CALL_JOINED, "call_id": call.call_id,
                     "participant": participant.to_wire()}, but=participant)
        _send_keys(registry, call, but=participant)
    return answer


def leave(server: CallServer, conn: CallConnection, call: Call) -> None:
    """Take the connection's device out of ``call``; the others are told."""
    assert conn.address is not None
    try:
        participant = server.calls.leave(call, conn.address)
    except CallRefused as exc:
        raise refused(exc) from None
    _left(server, call, participant, api.LEFT)


def end(server: CallServer, conn: CallConnection, call: Call, one_to_one: bool) -> None:
    """End ``call`` for everybody: its starter may, and either side of a one-to-one call."""
    assert conn.address is not None
    me = conn.address
    if not (me.account == call.starter.account
            or (one_to_one and call.participant_of(me) is not None)):
        raise refused(NotParticipantError("only the caller ends a group call; leave it "
                                          "instead"))
    server.calls.end(call)
    _ended(server, call)


def listing(call: Call, me: Address, **extra: Any) -> dict[str, Any]:
    """One entry of ``call_list``'s answer for the device ``me`` (``joined``: it is in it)."""
    return {"call_id": call.call_id, "from": [call.starter.account, call.starter.device_id],
            "participants": len(call.participants), "limit": call.limit, "e2e": call.e2e,
            "joined": call.participant_of(me) is not None, **extra}


def signal(conn: CallConnection, call: Call, frame: dict[str, Any]) -> dict[str, Any]:
    """Pass pairwise envelopes from this participant to other participants of ``call``.

    Each envelope is from this device and for another device in the call; nothing is stored
    (a device that is not connected is not in the call).
    """
    assert conn.address is not None
    me = conn.address
    sender = call.participant_of(me)
    if sender is None:
        raise refused(NotParticipantError("you are not in this call"))
    outgoing: list[tuple[CallParticipant, bytes]] = []
    for envelope, data in sent_envelopes(frame.get("envelopes"), me, call.limit,
                                         api.MAX_CALL_SIGNAL_BYTES, code=BAD_REQUEST,
                                         too_large=BAD_REQUEST):
        recipient = call.participant_of(envelope.recipient)
        if recipient is None or recipient is sender:
            raise RequestError(BAD_REQUEST, "envelopes are from this device, each for another "
                               "device in the call")
        outgoing.append((recipient, data))
    for recipient, data in outgoing:
        recipient.connection.push({"type": api.CALL_SIGNAL, "call_id": call.call_id,
                                   "from": sender.to_wire(), "envelope": data})
    return {"delivered": len(outgoing)}


def connection_closed(server: CallServer, conn: CallConnection) -> None:
    """``conn`` ended: its participants are gone, and the others are told."""
    for call, participant in server.calls.dropped(conn):
        _left(server, call, participant, api.GONE)


def _left(server: CallServer, call: Call, participant: CallParticipant, reason: str) -> None:
    if server.calls.ended(call):
        _ended(server, call)
        return
    _tell(call, {"type": api.CALL_LEFT, "call_id": call.call_id,
                 "participant": participant.to_wire(), "reason": reason})
    _send_keys(server.calls, call)


def _ended(server: CallServer, call: Call) -> None:
    """Tell every device of the invited accounts (participants and still ringing) it is over."""
    server.push_to_accounts(call.invited, {"type": api.CALL_ENDED, "call_id": call.call_id})


def _tell(call: Call, frame: dict[str, Any], but: CallParticipant | None = None) -> None:
    for participant in call.participants.values():
        if participant is not but:
            participant.connection.push(frame)


def _send_keys(registry: CallRegistry, call: Call, but: CallParticipant | None = None) -> None:
    """A server-keyed call's keys changed: every participant (but one) gets them all."""
    if not call.e2e:
        _tell(call, {"type": api.CALL_KEYS, "call_id": call.call_id,
                     "keys": registry.keys_of(call)}, but=but)

"""Relay requests on calls: start one (with an account, or in a group), join, leave, end,
list the calls one may join, and pass pairwise envelopes between participants.

On several relay nodes (a Redis store) a call runs on the node where it started: its registry
is that node's memory. Its rings and its end reach the invited accounts' devices on every node
(:meth:`~server.relay.server.Relay.push_to_accounts`, through the hub), but only a device
connected to that node can join it, leave it or signal in it; elsewhere such a request is
refused as ``unknown_call`` with ``elsewhere: true`` (the hub knows which node runs which call),
and ``call_list`` lists this node's calls.

The relay learns what routing needs: that a call exists, its id, the accounts invited (the
callee, or the group's routing copy) and which devices are in it. The media keys travel inside
pairwise envelopes it cannot read (``call_signal``), each only to a device in the call, and the
media through the forwarding unit, which the relay only names (with a join token). The rest is
:mod:`server.calls.signalling`, shared with the social server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import call_api
from e2e_proto import relay_api as api

from ..calls import signalling
from ..calls.registry import Call, NotInvitedError
from ..common.requests import RequestError
from .fields import account_field
from .groups import _group_id, _route

if TYPE_CHECKING:
    from .connection import RelayConnection


async def call_start(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Start a call with an account (``to``) or in a group (``group_id``), join it, ring."""
    assert conn.address is not None
    me = conn.address
    if (frame.get("to") is None) == (frame.get("group_id") is None):
        raise RequestError(api.BAD_REQUEST, "a call is with an account (to) or in a group "
                           "(group_id)")
    group_id = None
    if frame.get("to") is not None:
        callee = account_field(frame, "to")
        if callee == me.account:
            raise RequestError(api.BAD_REQUEST, "call another account")
        if await conn.relay.store.account(callee) is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {callee!r}")
        invited = frozenset({callee})
    else:
        group_id = _group_id(frame)
        route = await _route(conn, group_id)
        if me.account not in route.members:
            raise RequestError(api.NOT_GROUP_MEMBER, "you are not a member of this group")
        invited = frozenset(route.members)
    return signalling.start(conn.relay, conn, invited, group_id, True, {"group_id": group_id})


async def call_join(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Join a call (again, for a new token); the answer names the forwarding unit."""
    call = await _get_call(conn, frame)
    await _check_member(conn, call)
    return signalling.join(conn.relay, conn, call)


async def _get_call(conn: RelayConnection, frame: dict[str, Any]) -> Call:
    """The call the request names, on this node (``unknown_call``, with ``elsewhere`` when
    another relay node runs it)."""
    try:
        return signalling.get_call(conn.relay, frame)
    except RequestError as exc:
        call_id = frame.get("call_id")
        if (exc.code != call_api.UNKNOWN_CALL or type(call_id) is not bytes
                or not await conn.relay.hub.call_elsewhere(call_id)):
            raise
        raise RequestError(call_api.UNKNOWN_CALL, "this call runs on another relay node; a call "
                           "is joined through the node where it started (connect again to "
                           "reach it, or start a new call)", elsewhere=True) from None


async def _check_member(conn: RelayConnection, call: Call) -> None:
    """A group call is open to the group's members as they are now (the routing copy)."""
    assert conn.address is not None
    if call.conversation is None:
        return
    route = await conn.relay.store.group(call.conversation)
    if route is None or conn.address.account not in route.members:
        raise signalling.refused(NotInvitedError("you are not a member of the call's group"))


async def call_leave(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Leave a call; the others are told (the call ends when nobody is left)."""
    signalling.leave(conn.relay, conn, await _get_call(conn, frame))
    return {}


async def call_end(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """End a call for everybody (its caller, or either side of a one-to-one call)."""
    call = await _get_call(conn, frame)
    signalling.end(conn.relay, conn, call, one_to_one=call.conversation is None)
    return {}


async def call_list(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The running calls this account may join."""
    assert conn.address is not None
    return {"calls": [signalling.listing(c, conn.address, group_id=c.conversation)
                      for c in conn.relay.calls.calls_for(conn.address.account)]}


async def call_signal(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Pass pairwise envelopes (call keys) to other devices in the call."""
    return signalling.signal(conn, await _get_call(conn, frame), frame)


def connection_closed(conn: RelayConnection) -> None:
    """The connection ended: its participants are gone, and the others are told."""
    signalling.connection_closed(conn.relay, conn)

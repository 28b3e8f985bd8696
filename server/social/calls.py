"""Social-server requests on calls: start one in a conversation (one to one or a group), join,
leave, end, list, and pass pairwise envelopes in an end-to-end call.

A call in a secret (one-to-one) conversation is end to end: the participants hand each other
their media keys in pairwise envelopes (``call_signal``), as on the relay. Any other call is
server-keyed, labelled "not end-to-end encrypted": the server makes every participant's key,
steps them forward when someone joins and replaces them when someone leaves, and hands them out
(the join answer's ``keys``, ``call_keys`` pushes). The rest is :mod:`server.calls.signalling`,
shared with the relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api

from ..calls import signalling
from ..calls.registry import Call, NotInvitedError
from ..common.requests import RequestError
from .conversations import resolve
from .fields import name_field
from .store import GROUP

if TYPE_CHECKING:
    from .connection import SocialConnection


async def call_start(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Start a call in a conversation (an account or a group), join it, ring its members."""
    assert conn.address is not None
    me = conn.address.account
    name = name_field(frame, "conversation")
    if name == me:
        raise RequestError(api.BAD_REQUEST, "call another account")
    conversation = resolve(conn, name, create=True)
    assert conversation.id is not None
    title = conversation.name if conversation.kind == GROUP else me
    return signalling.start(conn.server, conn, frozenset(conversation.members), conversation.id,
                            conversation.secret, {"conversation": title,
                                                  "group": conversation.kind == GROUP})


async def call_join(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Join a call (again, for a new token); the answer names the forwarding unit."""
    call = signalling.get_call(conn.server, frame)
    _check_member(conn, call)
    return signalling.join(conn.server, conn, call)


def _check_member(conn: SocialConnection, call: Call) -> None:
    """A call is open to its conversation's members as they are now."""
    assert conn.address is not None
    conversation = conn.store.conversation(call.conversation)
    if conversation is None or conn.address.account not in conversation.members:
        raise signalling.refused(NotInvitedError("you are not a member of the call's "
                                                 "conversation"))


async def call_leave(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Leave a call; the others are told (the call ends when nobody is left)."""
    signalling.leave(conn.server, conn, signalling.get_call(conn.server, frame))
    return {}


async def call_end(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """End a call for everybody (its caller, or either side of a one-to-one call)."""
    call = signalling.get_call(conn.server, frame)
    conversation = conn.store.conversation(call.conversation)
    signalling.end(conn.server, conn, call,
                   one_to_one=conversation is not None and conversation.kind != GROUP)
    return {}


async def call_list(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The running calls this account may join, with the conversation as it sees it."""
    assert conn.address is not None
    me = conn.address.account
    found = []
    for call in conn.server.calls.calls_for(me):
        conversation = conn.store.conversation(call.conversation)
        if conversation is not None:
            found.append(signalling.listing(call, conn.address,
                                            conversation=conversation.title_for(me),
                                            group=conversation.kind == GROUP))
    return {"calls": found}


async def call_signal(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Pass pairwise envelopes (call keys) to other devices in an end-to-end call."""
    call = signalling.get_call(conn.server, frame)
    if not call.e2e:
        raise RequestError(api.NOT_SECRET, "this call is not end to end: the server hands "
                           "out its keys")
    return signalling.signal(conn, call, frame)


def connection_closed(conn: SocialConnection) -> None:
    """The connection ended: its participants are gone, and the others are told."""
    signalling.connection_closed(conn.server, conn)

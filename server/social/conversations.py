"""Conversations: what a name means to the caller (an account or a group), groups and their
members, and turning a one-to-one conversation secret."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api
from e2e_proto.address import is_valid_account

from ..common.requests import RequestError
from .fields import name_field
from .store import GROUP, Conversation, NameTakenError

if TYPE_CHECKING:
    from .connection import SocialConnection


def resolve(conn: SocialConnection, name: str, create: bool = False) -> Conversation:
    """The conversation ``name`` means to the caller: an account (one to one) or a group."""
    assert conn.address is not None
    me = conn.address.account
    if conn.store.account_exists(name):
        return conn.store.direct(me, name, create)
    group = conn.store.group(name)
    if group is None:
        raise RequestError(api.UNKNOWN_CONVERSATION, f"no account or group named {name!r}")
    if me not in group.members:
        raise RequestError(api.NOT_MEMBER, f"you are not a member of {name!r}")
    return group


def conversation_field(conn: SocialConnection, frame: dict[str, Any],
                       create: bool = False) -> Conversation:
    """The conversation named by the request's ``conversation`` field."""
    return resolve(conn, name_field(frame, "conversation"), create)


def describe_conversation(conn: SocialConnection, conversation: Conversation) -> dict[str, Any]:
    """A conversation as the caller sees it (title, kind, members, secret)."""
    assert conn.address is not None
    return {"conversation": conversation.title_for(conn.address.account),
            "kind": conversation.kind, "members": list(conversation.members),
            "secret": conversation.secret}


async def conversation_info(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Describe a conversation the caller may see."""
    return describe_conversation(conn, conversation_field(conn, frame))


def check_members(conn: SocialConnection, members: object, extra: int) -> list[str]:
    """Valid, existing, distinct member names, within the group size limit."""
    if type(members) is not list or not all(is_valid_account(m) for m in members):
        raise RequestError(api.BAD_REQUEST, "field 'members' must be a list of account "
                           "names")
    limit = conn.server.capabilities.max_group_members
    unique = sorted(set(members))  # type: ignore[arg-type]
    if len(unique) + extra > limit:
        raise RequestError(api.GROUP_TOO_LARGE, f"a group has at most {limit} members "
                           f"(this would make {len(unique) + extra})", limit=limit)
    unknown = [m for m in unique if not conn.store.account_exists(m)]
    if unknown:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {unknown[0]!r}",
                           accounts=unknown[:20])
    return unique


async def group_create(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Create a group with the caller and the named members."""
    assert conn.address is not None
    me, device_id = conn.address
    name = name_field(frame, "name")
    members = [m for m in check_members(conn, frame.get("members"), 1) if m != me]
    if conn.store.account_exists(name) or conn.store.group(name) is not None:
        raise RequestError(api.NAME_TAKEN, f"the name {name!r} is taken")
    try:
        group = conn.store.create_group(name, [me, *members], me, device_id,
                                        conn.server.now_ms())
    except NameTakenError:
        raise RequestError(api.NAME_TAKEN, f"the name {name!r} is taken") from None
    conn.server.wake(group.members)
    return describe_conversation(conn, group)


async def group_add(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Add members to a group the caller belongs to."""
    assert conn.address is not None
    group = conversation_field(conn, frame)
    if group.kind != GROUP or group.id is None:
        raise RequestError(api.BAD_REQUEST, "members can only be added to a group")
    new = [m for m in check_members(conn, frame.get("members"), 0)
           if m not in group.members]
    limit = conn.server.capabilities.max_group_members
    if len(group.members) + len(new) > limit:
        raise RequestError(api.GROUP_TOO_LARGE, f"a group has at most {limit} members "
                           f"(this would make {len(group.members) + len(new)})",
                           limit=limit)
    group = conn.store.add_members(group.id, new, *conn.address, conn.server.now_ms())
    conn.server.wake(group.members)
    return describe_conversation(conn, group)


async def secret(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Make a one-to-one conversation secret (end-to-end encrypted) from now on."""
    assert conn.address is not None
    conversation = conversation_field(conn, frame, create=True)
    if conversation.kind == GROUP:
        raise RequestError(api.UNSUPPORTED, "secret conversations are one to one; groups "
                           "are not end-to-end encrypted on the social transport")
    assert conversation.id is not None
    changed = not conversation.secret
    if changed:
        conn.store.set_secret(conversation.id, *conn.address, conn.server.now_ms())
        conn.server.wake(conversation.members)
    return {**describe_conversation(conn, conn.store.conversation(conversation.id) or conversation),
            "changed": changed}


def _group_of_caller(conn: SocialConnection, frame: dict[str, Any]) -> Conversation:
    group = conversation_field(conn, frame)
    if group.kind != GROUP or group.id is None:
        raise RequestError(api.BAD_REQUEST, "this is not a group")
    return group


async def group_remove(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Remove a member from a group the caller belongs to (any member may, as any may add)."""
    assert conn.address is not None
    group = _group_of_caller(conn, frame)
    member = name_field(frame, "member")
    if member not in group.members:
        raise RequestError(api.NOT_MEMBER, f"{member!r} is not a member of the group")
    assert group.id is not None
    notify = group.members
    group = conn.store.remove_member(group.id, member, *conn.address, conn.server.now_ms())
    conn.server.wake(notify)
    return describe_conversation(conn, group)


async def group_leave(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Leave a group."""
    assert conn.address is not None
    group = _group_of_caller(conn, frame)
    assert group.id is not None
    left = conn.store.remove_member(group.id, conn.address.account, *conn.address,
                                    conn.server.now_ms())
    conn.server.wake(group.members)
    return {"conversation": left.name, "kind": GROUP, "members": list(left.members),
            "secret": left.secret}


async def group_rename(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Rename a group the caller belongs to (the name must be free)."""
    assert conn.address is not None
    group = _group_of_caller(conn, frame)
    name = name_field(frame, "name")
    assert group.id is not None
    try:
        group = conn.store.rename_group(group.id, name, *conn.address, conn.server.now_ms())
    except NameTakenError:
        raise RequestError(api.NAME_TAKEN, f"the name {name!r} is taken") from None
    conn.server.wake(group.members)
    return describe_conversation(conn, group)

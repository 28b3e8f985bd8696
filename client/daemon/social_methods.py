"""The social transport's method handlers: each does what its ``e2e-chat --transport social``
command does, on the daemon's session, and returns the command's result as JSON. Message ids
are the server's, as decimal strings (as the CLI shows them)."""

from __future__ import annotations

from typing import Any

from e2e_proto.address import is_foreign

from ..cli.common import file_json
from ..cli.social import cross_verify, message_id_arg, no_admins
from ..cli.social import group_members as members_of
from ..social.media import media_text
from ..social.state import StoredMessage
from .accounts import SocialAccount
from .events import social_sent_event


async def whoami(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """``{account, device}``."""
    return {"account": account.account, "device": account.device_id}


async def send(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send ``text`` to the account or group ``name``; ``{id}`` (a ``sent`` event follows)."""
    name, text = params["name"], params["text"]
    async with account.session() as session:
        message_id = await session.send_text(name, text)
        secret = is_foreign(name) or session.state.is_secret(name)  # across: end to end
    ts = int(account.client.clock() * 1000)
    account.hub.broadcast(social_sent_event(name, account.account, account.device_id,
                                            message_id, ts, text, secret))
    return {"id": str(message_id)}


async def group_create(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Create the group ``name`` with ``members``; ``{name, members}``."""
    async with account.session() as session:
        info = await session.group_create(params["name"], params["members"])
    return {"name": params["name"], "members": list(info["members"])}


async def group_add(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Add ``members`` to the group ``name``; ``{name, members}`` (all members now)."""
    async with account.session() as session:
        info = await session.group_add(params["name"], params["members"])
    return {"name": params["name"], "members": list(info.get("members", []))}


async def send_file(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send the file at ``path`` to the account or group ``name`` (``caption``, ``mime``
    optional): ``{id, end_to_end}`` and the file's fields (a ``sent`` event follows)."""
    name = params["name"]
    async with account.session() as session:
        sent = await session.send_file(name, params["path"], params["caption"], params["mime"])
    ts = int(account.client.clock() * 1000)
    account.hub.broadcast(social_sent_event(name, account.account, account.device_id,
                                            sent.message, ts, media_text(sent.file.media),
                                            sent.end_to_end, sent.file))
    return {"id": str(sent.message), "end_to_end": sent.end_to_end, **file_json(sent.file)}


async def fetch_file(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Download (again) the file of the message ``message_id``: its ``{id}`` and fields
    (``path`` null and ``error`` set when it could not be saved)."""
    async with account.session() as session:
        record = await session.fetch_file(params["message_id"])
    return {"id": record.message, **file_json(record)}


async def group_remove(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Remove ``member`` from the group ``name``; ``{name, member}``."""
    async with account.session() as session:
        await session.group_remove(params["name"], params["member"])
    return {"name": params["name"], "member": params["member"]}


async def group_leave(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Leave the group ``name``; ``{name}``."""
    async with account.session() as session:
        await session.group_leave(params["name"])
    return {"name": params["name"]}


async def group_rename(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Rename the group ``name`` to ``new_name``; ``{name, new_name}``."""
    async with account.session() as session:
        await session.group_rename(params["name"], params["new_name"])
    return {"name": params["name"], "new_name": params["new_name"]}


async def group_members(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The members of the group ``name``: ``{name, members}``."""
    name = params["name"]
    async with account.session() as session:
        return {"name": name, "members": members_of(name, await session.conversation(name))}


async def group_admin(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Refused: social groups have no admins (as the CLI says)."""
    raise no_admins()


async def react(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Set this account's one reaction to ``message_id``; ``{changed}``."""
    async with account.session() as session:
        return {"changed": await session.react(message_id_arg(params["message_id"]),
                                                params["emoji"])}


async def unreact(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Remove this account's reaction to ``message_id``; ``{changed}`` (False: there was none)."""
    async with account.session() as session:
        return {"changed": await session.unreact(message_id_arg(params["message_id"]))}


async def pin(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Pin ``message_id``; ``{changed}`` (False: it was pinned)."""
    async with account.session() as session:
        return {"changed": await session.pin(message_id_arg(params["message_id"]))}


async def unpin(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Unpin ``message_id``; ``{changed}`` (False: it was not pinned)."""
    async with account.session() as session:
        return {"changed": await session.unpin(message_id_arg(params["message_id"]))}


async def pins(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The pinned messages of the conversation ``name``: ``{messages}``."""
    async with account.session() as session:
        return {"messages": stored_json(await session.pins(params["name"]))}


async def history(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """A page of the conversation ``name``, oldest first, before message ``before`` if given:
    ``{messages, more}``."""
    before = params["before"]
    async with account.session() as session:
        messages, more = await session.history(
            params["name"], None if before is None else message_id_arg(before))
    return {"messages": stored_json(messages), "more": more}


async def search(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Messages of this account's conversations holding every word of ``text``: ``{messages}``."""
    async with account.session() as session:
        return {"messages": stored_json(await session.search(params["text"]))}


async def secret(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Make the conversation with ``name`` end-to-end encrypted; ``{changed}``."""
    async with account.session() as session:
        return {"changed": await session.make_secret(params["name"])}


async def verify(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """``name``'s devices, their keys and status; ``accept`` accepts them as listed now:
    ``{devices: [{id, key, status}], accepted: {devices, released} | null}``. An account of
    the private transport (``NAME@private``): as the private transport's ``verify``,
    ``{key_changed, safety_number, released}``."""
    if is_foreign(params["name"]):
        return await _cross_verify(account, params["name"], bool(params["accept"]))
    async with account.session() as session:
        report = await session.device_report(params["name"])
        accepted = (await session.accept_devices(params["name"])) if params["accept"] else None
        if accepted is not None and accepted[1]:
            await account.queue_released(session)
    return {"devices": [{"id": device_id, "key": key.hex(), "status": status}
                        for device_id, key, status in report],
            "accepted": None if accepted is None else {"devices": accepted[0],
                                                       "released": accepted[1]}}


async def _cross_verify(account: SocialAccount, name: str, accept: bool) -> dict[str, Any]:
    """``verify NAME@private``: the safety number both sides see (the CLI's
    :func:`~client.cli.social.cross_verify`)."""
    async with account.session() as session:
        report = await cross_verify(session, name, accept)
        if report.released:
            await account.queue_released(session)
    return {"key_changed": report.key_changed, "safety_number": report.safety_number,
            "released": report.released}


async def devices(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """This account's devices: ``{devices: [{id, key, created, last_seen, expires, current}],
    this_device}`` (key null: none published yet; times float seconds or null)."""
    async with account.session() as session:
        rows = await session.own_devices()
    return {"devices": [{"id": d.device_id, "key": None if d.key is None else d.key.hex(),
                         "created": d.created, "last_seen": d.last_seen, "expires": d.expires,
                         "current": d.current} for d in rows],
            "this_device": account.device_id}


async def unlink(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Revoke another device's login: ``{device_id}``."""
    async with account.session() as session:
        return {"device_id": await session.revoke_device(params["device_id"])}


def stored_json(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    """Messages of history, pins or search as JSON (ids as decimal strings)."""
    return [{"id": str(m.id), "conversation": m.conversation, "from": m.sender,
             "device": m.device, "ts": m.ts, "text": m.text, "secret": m.secret,
             "reactions": [list(r) for r in m.reactions], "pinned": m.pinned}
            for m in messages]


def stored_from_json(messages: list[dict[str, Any]]) -> list[StoredMessage]:
    """Inverse of :func:`stored_json`."""
    return [StoredMessage(int(m["id"]), m["conversation"], m["from"], m["device"], m["ts"],
                          m["text"], m["secret"], [(a, e) for a, e in m["reactions"]],
                          m["pinned"])
            for m in messages]

"""The social transport's method handlers: each does what its ``e2e-chat --transport social``
command does, on the daemon's session, and returns the command's result as JSON. Message ids
are the server's, as decimal strings (as the CLI shows them)."""

from __future__ import annotations

from typing import Any

from ..cli.social import message_id_arg
from ..social.session import SocialSession
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
        secret = session.state.is_secret(name)
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
    ``{devices: [{id, key, status}], accepted: {devices, released} | null}``."""
    async with account.session() as session:
        report = await session.device_report(params["name"])
        accepted = (await session.accept_devices(params["name"])) if params["accept"] else None
    if accepted is not None and accepted[1]:
        account.queue_released()
    return {"devices": [{"id": device_id, "key": key.hex(), "status": status}
                        for device_id, key, status in report],
            "accepted": None if accepted is None else {"devices": accepted[0],
                                                       "released": accepted[1]}}


async def devices(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """This account's devices: ``{devices: [{id, key}], this_device}`` (key null: none yet)."""
    async with account.session() as session:
        rows = await _own_devices(session)
    return {"devices": [{"id": device_id, "key": None if key is None else key.hex()}
                        for device_id, key in rows], "this_device": account.device_id}


async def _own_devices(session: SocialSession) -> list[tuple[int, bytes | None]]:
    response = await session.request("get_devices", account=session.state.account or "")
    return [(device_id, key) for device_id, key in response["devices"]]


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

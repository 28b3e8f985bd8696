"""The private transport's method handlers: each does what its ``e2e-chat`` command does, on the
daemon's session, and returns the command's result as JSON (the CLI's client mode prints it)."""

from __future__ import annotations

from typing import Any

from e2e_proto.groups import GroupState

from ..cli.common import file_json
from ..cli.private import upload_lost, verify_report
from ..core.connection import ConnectionLost
from ..private.received import Received
from .accounts import PrivateAccount
from .events import private_event


async def whoami(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """``{account, device}``."""
    return {"account": account.account, "device": account.device_id}


async def send(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send ``text`` to ``name``; ``{id, ts}`` of the message (a ``sent`` event follows)."""
    async with account.session() as session:
        try:
            sent = await session.send_text(params["name"], params["text"])
        finally:
            account.publish_key_changes(params["name"])
    account.hub.broadcast(private_event(sent, sent=True))
    return {"id": sent.id.hex(), "ts": sent.ts}


async def react(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """React with ``emoji`` to the stored message ``message_id`` (hex, a unique prefix)."""
    async with account.session() as session:
        await session.react(params["message_id"], params["emoji"])
    return {}


async def unreact(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Remove this account's reaction to ``message_id``."""
    async with account.session() as session:
        await session.react(params["message_id"], None)
    return {}


async def verify(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The safety number with ``name`` after refreshing its device list; ``accept`` trusts its
    current account key. ``{key_changed, safety_number, released}``."""
    name = params["name"]
    async with account.session() as session:
        await session.device_list(name, refresh=True)
        account.publish_key_changes(name)
        report = verify_report(account.client.state, name, bool(params["accept"]))
        if report.released:
            await account.queue_released(session)
    return {"key_changed": report.key_changed, "safety_number": report.safety_number,
            "released": report.released}


async def devices(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """This account's devices: ``{devices: [{id, name, linked_at, last_seen}], this_device}``."""
    async with account.session() as session:
        details = await session.device_details()
    return {"devices": [{"id": device_id, "name": name, "linked_at": linked_at,
                         "last_seen": last_seen}
                        for device_id, name, linked_at, last_seen in details],
            "this_device": account.device_id}


async def approve(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """On the primary: link the device showing ``code``; ``{device_id}``."""
    async with account.session() as session:
        return {"device_id": await session.approve(params["code"])}


async def unlink(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """On the primary: remove linked device ``device_id``; ``{device_id}``."""
    async with account.session() as session:
        await session.unlink(params["device_id"])
    return {"device_id": params["device_id"]}


async def send_file(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send the file at ``path`` to ``name`` (``caption``, ``mime`` optional); the message's
    ``{id, ts}`` and the file's fields (a ``sent`` event follows). A lost connection says to
    call again: the upload resumes."""
    name = params["name"]
    async with account.session() as session:
        try:
            sent = await session.send_file(name, params["path"], params["caption"],
                                           params["mime"])
        except ConnectionLost as exc:
            raise upload_lost(exc) from None
        finally:
            account.publish_key_changes(name)
    account.hub.broadcast(private_event(sent, sent=True))
    return sent_json(sent)


async def fetch_file(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Download (again) the file of the message ``message_id`` (hex, a unique prefix): its
    ``{id}`` and fields (``path`` null and ``error`` set when it could not be saved)."""
    async with account.session() as session:
        record = await session.fetch_file(params["message_id"])
    return {"id": record.message, **file_json(record)}


async def group_create(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Create the group ``name`` of this account (its admin) and ``members``."""
    async with account.group_session() as session:
        return group_json(await session.group_create(params["name"], params["members"]))


async def group_add(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Admins: add ``members`` to the group ``name``."""
    async with account.group_session() as session:
        return group_json(await session.group_add(params["name"], params["members"]))


async def group_remove(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Admins: remove ``member`` from the group ``name``."""
    async with account.group_session() as session:
        return group_json(await session.group_remove(params["name"], params["member"]))


async def group_leave(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Leave the group ``name``; the group as it is without this account."""
    async with account.group_session() as session:
        return group_json(await session.group_leave(params["name"]))


async def group_rename(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Admins: rename the group ``name`` to ``new_name``."""
    async with account.group_session() as session:
        return group_json(await session.group_rename(params["name"], params["new_name"]))


async def group_admin(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Admins: make ``member`` an admin of the group ``name`` (``revoke``: no longer one)."""
    async with account.group_session() as session:
        return group_json(await session.group_admin(params["name"], params["member"],
                                                    not params["revoke"]))


async def group_members(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The group ``name`` as this device holds it."""
    async with account.group_session() as session:
        return group_json(session.find_group(params["name"]).state)


async def group_send(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send ``text`` to the group ``name``; ``{id, ts}`` (a ``sent`` event follows)."""
    async with account.group_session() as session:
        sent = await session.group_send_text(params["name"], params["text"])
    account.hub.broadcast(private_event(sent, sent=True))
    return sent_json(sent)


async def group_send_file(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Send the file at ``path`` to the group ``name``; as :func:`send_file`."""
    async with account.group_session() as session:
        sent = await session.group_send_file(params["name"], params["path"], params["caption"],
                                             params["mime"])
    account.hub.broadcast(private_event(sent, sent=True))
    return sent_json(sent)


def sent_json(sent: Received) -> dict[str, Any]:
    """A message this device sent: ``{id, ts}``, and a file's fields."""
    return {"id": sent.id.hex(), "ts": sent.ts,
            **({} if sent.file is None else file_json(sent.file))}


def group_json(state: GroupState) -> dict[str, Any]:
    """A group's state: ``{group (id, hex), version, name, members, admins}``."""
    return {"group": state.group_id.hex(), "version": state.version, "name": state.name,
            "members": list(state.members), "admins": list(state.admins)}

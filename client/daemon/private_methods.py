"""The private transport's method handlers: each does what its ``e2e-chat`` command does, on the
daemon's session, and returns the command's result as JSON (the CLI's client mode prints it)."""

from __future__ import annotations

from typing import Any

from ..cli.private import verify_report
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
        account.queue_released()
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

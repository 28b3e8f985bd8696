"""Conversations: looking one up, making and growing groups, and sending text to one (in the
clear, or end-to-end encrypted through :mod:`.secret` when the conversation is secret)."""

from __future__ import annotations

from typing import Any

from e2e_proto import social_api as api
from e2e_proto.address import is_foreign
from e2e_proto.capabilities import CAPABILITIES, SOCIAL

from ..core.errors import ClientError
from .base import SessionBase
from .checks import check_name, check_text


class Conversations(SessionBase):
    """One-to-one conversations and groups, and sending to them."""

    async def conversation(self, name: str) -> dict[str, Any]:
        """``{conversation, kind, members, secret}`` of the account or group ``name``."""
        check_name(name)
        info = await self.request("conversation", conversation=name)
        if info.get("kind") == "direct" and info.get("secret") is True:
            self.state.mark_secret(name)  # a server may switch it on, never off again
        return info

    async def group_create(self, name: str, members: list[str]) -> dict[str, Any]:
        """Create a group of this account and ``members`` (the capability table's limit)."""
        assert self.address is not None
        check_name(name, "group name")
        for member in members:
            check_name(member, "member name")
        limit = CAPABILITIES[SOCIAL].max_group_members
        count = len(set(members) | {self.address.account})
        if count > limit:
            raise ClientError(f"a group has at most {limit} members (this would make {count})")
        return await self.request("group_create", name=name, members=members)

    async def group_add(self, name: str, members: list[str]) -> dict[str, Any]:
        """Add ``members`` to the group ``name``."""
        check_name(name, "group name")
        return await self.request("group_add", conversation=name, members=members)

    async def group_remove(self, name: str, member: str) -> dict[str, Any]:
        """Remove ``member`` from the group ``name``."""
        check_name(name, "group name")
        check_name(member, "member name")
        return await self.request("group_remove", conversation=name, member=member)

    async def group_leave(self, name: str) -> dict[str, Any]:
        """Leave the group ``name``."""
        check_name(name, "group name")
        return await self.request("group_leave", conversation=name)

    async def group_rename(self, name: str, new_name: str) -> dict[str, Any]:
        """Rename the group ``name`` to ``new_name`` (a free name)."""
        check_name(name, "group name")
        check_name(new_name, "group name")
        return await self.request("group_rename", conversation=name, name=new_name)

    async def send_text(self, name: str, text: str, client_id: bytes | None = None) -> int:
        """Send ``text`` to the account or group ``name``; the server's message id.

        In a secret conversation the text is encrypted for every other device of both members
        and the server gets only envelopes. A conversation this device once learned is secret
        stays secret here, whatever the server answers later: its text is never sent in the
        clear. Resending after a lost answer with the same ``client_id`` (16 bytes; random when
        not given) cannot store the message twice.
        """
        check_text(text)
        if is_foreign(name):  # an account of the private transport: end to end, always
            return await self.send_cross_text(name, text)
        client_id = client_id or self.client.random(api.CLIENT_ID_SIZE)
        info = await self.conversation(name)
        if self.state.is_secret(name):
            assert self.address is not None
            return await self._send_secret(name, sorted({self.address.account, name}), text,
                                           client_id)
        if info.get("secret"):
            return await self._send_secret(name, info["members"], text, client_id)
        response = await self.request("send", conversation=name, text=text, client_id=client_id)
        message_id = int(response["message"])
        self.state.remember_message(message_id, name)
        return message_id

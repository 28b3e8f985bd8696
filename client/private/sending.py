"""Sending: a payload encrypted for every current device of the recipient and of this account.

Every advanced sending chain is committed before anything leaves; when the relay answers that
the device lists changed, they are fetched and verified again and the send is retried once. A
payload for an account of the other transport (``name@social``) goes the same way as a
``cross_send`` (its payload id as the idempotency key); :mod:`.cross` keeps it until it is
taken.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, is_foreign
from e2e_proto.payload import Payload

from ..core.bundles import start_sessions
from ..core.connection import ServerError
from ..core.errors import ClientError
from .base import SessionBase
from .device_lists import cross_refusal
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")

MAX_REACTION_LENGTH = 32


class Sending(SessionBase):
    """Text, reactions and any payload, fanned out to every device."""

    async def _ensure_sessions(self, targets: list[Address]) -> None:
        missing: dict[str, list[int]] = {}
        for address in targets:
            if self.state.protocol.load_session(address) is None:
                missing.setdefault(address.account, []).append(address.device_id)
        for account, device_ids in missing.items():
            listed = (await self.device_list(account)).devices
            try:
                response = await self.connection.request(
                    "cross_bundles" if is_foreign(account) else "fetch_bundles",
                    account=account, device_ids=device_ids)
            except ServerError as exc:
                if is_foreign(account):
                    raise cross_refusal(exc) from None
                raise
            start_sessions(self.state.protocol, account, device_ids, response.get("bundles"),
                           dict(listed), self.client.random)

    async def react(self, message_id: str, emoji: str | None) -> None:
        """A text reaction (an encrypted payload of kind ``reaction``); None removes it."""
        message = self.state.find_message(message_id)
        if message is None:
            raise ClientError(f"no stored message with id {message_id!r} (see recv --json)")
        if emoji is not None and not 0 < len(emoji) <= MAX_REACTION_LENGTH:
            raise ClientError(f"a reaction is 1 to {MAX_REACTION_LENGTH} characters")
        await self.send_payload(message.peer, Payload.new(
            "reaction", int(self.client.clock() * 1000), self.client.random,
            target=message.id, emoji=emoji or "", to=message.peer))

    async def send_text(self, to: str, text: str) -> Received:
        """Send ``text`` to every device of ``to`` and to this account's other devices (an
        account of the other transport through the cross outbox: :mod:`.cross`)."""
        assert self.address is not None
        if is_foreign(to):
            return await self.send_cross_text(to, text)
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text, to=to)
        await self.send_payload(to, payload)
        message = StoredMessage(payload.id, self.address.account, self.address.device_id, to,
                                payload.ts, "text", text)
        self.state.add_message(message, self.client.clock(), seen=True)
        return from_stored(message, outgoing=True)

    async def send_payload(self, to: str, payload: Payload, blobs: Sequence[bytes] = ()) -> None:
        """Encrypt ``payload`` for every current device and hand it to the relay.

        ``blobs`` are the uploaded blobs the payload announces: the relay lets the devices
        the message goes to download them. When the relay answers that the device lists
        changed, the lists are fetched and verified again, missing sessions are made, and the
        send is retried once.
        """
        extra: dict[str, Any] = {"blobs": list(blobs)} if blobs else {}
        kind = "send"
        if is_foreign(to):  # across the transports: no blob crosses; resends are one message
            if blobs:
                raise ClientError("files do not go to the other transport")
            kind, extra = "cross_send", {"client_id": payload.id}
        plaintext = payload.encode()
        for attempt in range(2):
            targets = await self._targets(to, refresh=attempt > 0)
            await self._ensure_sessions(targets)
            cipher = self.cipher
            # Every advanced sending chain is on disk before anything leaves, in one commit
            # (one fsync) for all devices: a key is never handed out twice after a crash.
            with self.state.transaction():
                envelopes = [cipher.encrypt(address, plaintext).encode() for address in targets]
            try:
                await self.connection.request(kind, to=to, envelopes=envelopes, **extra)
                return
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt == 0:
                    log.info("device lists changed (%s); refreshing", exc.details)
                    continue
                if exc.code == api.UNKNOWN_ACCOUNT:
                    raise ClientError(f"unknown user {to!r}") from None
                if kind == "cross_send":
                    raise cross_refusal(exc) from None
                raise ClientError(f"the relay refused the message: {exc}") from None

"""Receiving: each event is stored, unseen, in the transaction that records its ``seq`` (a secret
message together with its ratchet step), then shown, then marked seen, then acknowledged.

Events stored but not shown in an earlier run are shown first; events this device caused itself
are acknowledged without being shown; a secret message that cannot be read becomes a notice. A
secret message from a device not accepted (:mod:`.device_pins`) is stored held and announced by
a notice; it is shown once the user accepts the sender's devices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from e2e_proto import call_api
from e2e_proto.address import Address, is_foreign, is_valid_account, is_valid_device_id
from e2e_proto.errors import DuplicateMessageError, E2EProtoError, RemoteProtocolError
from e2e_proto.media import MEDIA_KIND, MediaPayload
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher
from e2e_proto.wire import Envelope

from ..core.connection import ConnectionLost
from ..core.errors import ClientError
from .base import SessionBase
from .checks import is_id
from .state import SocialEvent

EventHandler = Callable[[SocialEvent], Awaitable[None] | None]


class Receiving(SessionBase):
    """Fetching, storing, showing and acknowledging events."""

    async def receive(self, handler: EventHandler, wait: float | None = None) -> None:
        """Show what happened since this device last received, then (with ``wait``) go on.

        Each event is stored locally, unseen, in the transaction that records its ``seq`` (a
        secret message together with its ratchet step), then shown to ``handler``, then marked
        seen, then acknowledged. Events stored but not shown in an earlier run (a crash or a
        lost connection in between) are shown first, then a ring for each call one may join.
        Events this device caused itself are acknowledged without being shown. ``wait=None``
        returns once the backlog is drained; ``math.inf`` runs until cancelled.
        """
        for account, count in self.state.held_counts():
            await self._show(handler, SocialEvent(0, "notice", account, account, 0, 0,
                                                  warning=_held(account, count)))
        await self.show_unseen(handler)
        for ring in await self.ringing_notices():
            await self._show(handler, ring)
        with trio.move_on_after(wait if wait is not None else float("inf")):
            async for frame in self.connection.pushes:
                kind = frame.get("type")
                if kind == "event":
                    await self._event(handler, frame)
                elif kind in call_api.PUSHES:
                    ring = await self._on_call_push(frame)
                    if ring is not None:
                        await self._show(handler, ring)
                elif kind == "queue_empty" and wait is None:
                    return
                elif kind == "error":
                    raise ConnectionLost("the social server closed the connection: "
                                         f"{frame.get('message', 'error')}")
            raise ConnectionLost("the social server closed the connection")

    async def show_unseen(self, handler: EventHandler) -> None:
        """Show the events stored but not shown yet (those of an earlier run, or released by
        accepting a sender's devices), each marked shown after ``handler`` returns."""
        for event in self.state.unseen_events():
            await self._show(handler, await self._with_file(event))

    async def _show(self, handler: EventHandler, event: SocialEvent) -> None:
        result = handler(event)
        if result is not None:
            await result
        self.state.mark_event_seen(event.seq)

    async def _event(self, handler: EventHandler, frame: dict[str, Any]) -> None:
        assert self.address is not None
        seq, message, device, ts = (frame.get(k) for k in ("seq", "message", "device", "ts"))
        if (not is_id(seq) or not (message is None or is_id(message))
                or not is_valid_device_id(device) or type(ts) is not int
                or not -2**63 <= ts < 2**63):
            raise ConnectionLost("the social server sent a malformed event")
        if seq <= int(self.state.get("last_seq") or 0):
            await self.request("ack", seq=seq)  # stored in an earlier run; the ack was lost
            return
        event = SocialEvent(seq, str(frame["kind"]), str(frame["conversation"]),
                            str(frame["from"]), device, ts, message, frame.get("text"),
                            frame.get("emoji"), bool(frame.get("secret")))
        mine = (event.sender, event.device) == tuple(self.address)
        if event.kind == "message" and is_foreign(event.conversation) and not mine:
            event = await self._decrypt_cross(event, frame.get("envelope"))
        elif event.kind == "message" and event.secret and not mine:
            try:  # both members' devices are pinned at the first secret message
                await self.pin_on_first_use(*sorted(
                    {a for a in (self.address.account, event.conversation, event.sender)
                     if is_valid_account(a)}))
            except ClientError:
                pass  # not pinned: a message from the device is held
            event = self._decrypt(event, frame.get("envelope"))
        else:
            media = frame.get("media") if event.kind == "message" and not mine else None
            with self.state.protocol.transaction():
                if media is not None:
                    event = self._plain_media(event, media)
                self._record(event, mine)
        if not mine:
            await self._show(handler, await self._with_file(event))
        await self.request("ack", seq=seq)

    def _plain_media(self, event: SocialEvent, fields: object) -> SocialEvent:
        """A plaintext message's file (the server could read its key): recorded in the caller's
        transaction; a notice when its fields are invalid."""
        assert event.message is not None
        try:
            media = MediaPayload.from_fields(fields)
        except E2EProtoError as exc:
            return dataclasses.replace(event, kind="notice",
                                       warning=f"a file message cannot be read: {exc}")
        text = self._keep_media(event.message, media)
        return dataclasses.replace(event, text=event.text or text)

    def _record(self, event: SocialEvent, mine: bool = False, held: bool = False) -> None:
        """Store an event (unseen unless ``mine``; ``held`` until its sender device is
        accepted) and its ``seq``, in the caller's transaction.

        A ``secret`` event marks the conversation secret on this device for good.
        """
        if event.kind == "secret":
            self.state.mark_secret(event.conversation)
        if event.message is not None:
            self.state.remember_message(event.message, event.conversation)
        if not mine:
            self.state.add_event(event, held)
        self.state.set("last_seq", event.seq)

    def _decrypt(self, event: SocialEvent, data: object) -> SocialEvent:
        """Decrypt a secret message; commit it with the ratchet step, the event and its seq."""
        assert self.address is not None
        known = self.state.secret_text(event.message or 0)
        if known is not None:
            event = dataclasses.replace(event, text=known)
            with self.state.protocol.transaction():
                self._record(event)
            return event
        try:
            if type(data) is not bytes:
                raise ClientError("it was not encrypted for this device (logged in later?)")
            envelope = Envelope.decode(data)
            if envelope.recipient != self.address or envelope.sender != Address(
                    event.sender, event.device):
                raise ClientError("its envelope is addressed wrongly")
            accepted = self.accepted_key(envelope.sender)
            if envelope.prekey is not None and accepted not in (
                    None, envelope.prekey.identity_key.raw):
                raise ClientError(f"the identity key of {envelope.sender} changed")
            with self.state.protocol.transaction():
                payload = Payload.decode(SessionCipher(
                    self.state.protocol, self.address, self.client.random).decrypt(envelope))
                identity = self.state.protocol.get_identity(envelope.sender)
                held = accepted is None or identity is None or identity.raw != accepted
                text = payload.fields.get("text") if payload.kind == "text" else None
                if payload.kind == MEDIA_KIND and event.message is not None:
                    text = self._keep_media(event.message, MediaPayload.from_payload(payload))
                event = dataclasses.replace(event, text=text if isinstance(text, str)
                                            else f"[unsupported {payload.kind!r}]")
                self.state.save_secret(event)
                self._record(event, held=held)
            if held:
                return dataclasses.replace(event, kind="notice", text=None, warning=(
                    f"a secret message from {event.sender}'s device {event.device}, which you "
                    "have not accepted, is held; " + _accept_hint(event.sender)))
            return event
        except DuplicateMessageError:
            warning = "a secret message was delivered twice"
        except (RemoteProtocolError, ClientError, E2EProtoError) as exc:
            warning = f"a secret message cannot be read: {exc}"
        notice = dataclasses.replace(event, kind="notice", warning=warning)
        with self.state.protocol.transaction():
            self._record(notice)
        return notice


def _accept_hint(account: str) -> str:
    return (f"check {account}'s devices with 'e2e-chat --transport social verify {account}', "
            f"then accept them with 'verify {account} --accept'")


def _held(account: str, count: int) -> str:
    """The reminder of messages held from devices of ``account`` not accepted."""
    what = "a secret message" if count == 1 else f"{count} secret messages"
    verb = "is" if count == 1 else "are"
    return f"{what} from {account} {verb} held (a device not accepted); " + _accept_hint(account)

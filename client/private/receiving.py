"""Receiving: each delivery is decrypted, stored and committed with its ratchet step before it
is acknowledged, then shown once.

Messages are deduplicated by payload id, so a crash at any point neither loses nor repeats one;
a delivery that cannot be read becomes a notice and is acknowledged, so it cannot wedge the
mailbox. Every message from an account whose key changed (not accepted yet) is held: stored,
announced by a notice, shown only after ``verify --accept``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from e2e_proto import call_api
from e2e_proto.address import Address, is_foreign
from e2e_proto.errors import DuplicateMessageError, RemoteProtocolError
from e2e_proto.groups import GroupUpdate
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.media import MEDIA_KIND
from e2e_proto.payload import (
    GROUP_UPDATE_KIND,
    PROFILE_KIND,
    SENDER_KEY_KIND,
    STATUS_KIND,
    Payload,
)
from e2e_proto.wire import GroupEnvelope, decode_delivery

from ..core.connection import ConnectionLost, ServerError
from ..core.cross_outbox import CrossPending
from ..core.errors import ClientError
from ..core.pushes import bounded_int, bounded_str
from .base import SessionBase
from .group_state import group_peer, peer_group_id
from .groups import UnknownAuthorError
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")

MAX_SEQ = 2**63 - 1
"""The largest delivery sequence number (the relay's SQLite integer)."""

MessageHandler = Callable[[Received], Awaitable[None] | None]
_QUIET_KINDS = frozenset({"device_sync", SENDER_KEY_KIND})
"""Payload kinds stored (for deduplication) but not shown."""


class Receiving(SessionBase):
    """Fetching, decrypting, storing and acknowledging deliveries."""

    async def receive(self, handler: MessageHandler, wait: float | None = None) -> None:
        """Fetch queued messages, then (with ``wait``) keep receiving for ``wait`` seconds.

        Each new message is committed locally before it is acknowledged, and shown to
        ``handler`` once: messages stored but not shown in an earlier run (a lost connection or
        a crash after the commit) come first, then a ring for each call one may join.
        ``wait=None`` returns once the queue is drained; ``wait=math.inf`` runs until cancelled.
        """
        assert self.address is not None
        for account, count in self.state.held_counts():
            await self._show(handler, _notice(_held(account, count)))
        await self.show_unseen(handler)
        for ring in await self.ringing_notices():
            await self._show(handler, ring)
        if wait is None and self.backlog_drained:
            # The relay announces the end of the backlog once per connection, and it was seen
            # already (while linking): take what has arrived since, without waiting for more.
            while True:
                try:
                    frame = self.connection.pushes.receive_nowait()
                except trio.WouldBlock:
                    return
                except trio.EndOfChannel:
                    raise ConnectionLost("the relay closed the connection") from None
                await self._on_push(handler, frame)
        with trio.move_on_after(wait if wait is not None else float("inf")):
            async for frame in self.connection.pushes:
                if await self._on_push(handler, frame) and wait is None:
                    return
            raise ConnectionLost("the relay closed the connection")

    async def catch_up(self) -> None:
        """Take in everything queued for this device (group updates included) before a group
        command: every push is handled as :meth:`receive` handles it, but what arrives is
        stored, not shown; the next ``recv`` shows it."""
        async for frame in self.connection.pushes:
            if await self._on_push(None, frame):
                return
        raise ConnectionLost("the relay closed the connection")

    async def show_unseen(self, handler: MessageHandler) -> None:
        """Show the messages stored but not shown yet (those of an earlier run, or released by
        accepting a key change), each marked shown after ``handler`` returns."""
        for message in self.state.unseen():
            await self._show(handler, await self._with_any_file(self._as_received(message)))

    async def _with_any_file(self, received: Received) -> Received:
        """``received`` with its file when it announces one (downloaded if not yet)."""
        return await self._with_file(received) if received.kind == MEDIA_KIND else received

    async def _on_push(self, handler: MessageHandler | None, frame: dict[str, Any]) -> bool:
        """Act on one push from the relay; True when it says the backlog is drained.

        Without a ``handler``, a delivery is stored and acknowledged but not shown (nor are
        notices and rings): the next :meth:`receive` shows what is new.
        """
        kind = frame.get("type")
        if kind == "deliver":
            received = await self._process(frame.get("seq"), frame.get("envelope"))
            if handler is None:
                return False
            if received is not None:
                await self._show(handler, await self._with_any_file(received))
            while self.notices:
                await self._show(handler, _notice(self.notices.pop(0)))
        elif kind == "queue_empty":
            self.backlog_drained = True
            return True
        elif kind == "prekeys_low":
            await self._top_up(frame.get("count"))
        elif kind in call_api.PUSHES:
            ring = await self._on_call_push(frame)
            if ring is not None and handler is not None:
                await self._show(handler, ring)
        elif kind == "error":
            raise ConnectionLost(f"the relay closed the connection: "
                                 f"{bounded_str(frame.get('message'), 200) or 'error'}")
        return False

    async def _show(self, handler: MessageHandler, received: Received) -> None:
        result = handler(received)
        if result is not None:
            await result
        if received.warning is None:
            self.state.mark_seen(received.id)

    async def _process(self, seq: Any, data: Any) -> Received | None:
        """Decrypt, store and acknowledge one delivery; a notice for what cannot be read.

        A group update whose author device is not in the list held here is rolled back, the
        author's list fetched, and the delivery taken once more.
        """
        assert self.address is not None
        if bounded_int(seq, 1, MAX_SEQ) is None or type(data) is not bytes:
            log.warning("ignored a malformed delivery from the relay")
            return _notice("ignored a malformed delivery from the relay")
        notice: str | None = None
        received: Received | None = None
        for attempt in range(2):
            try:
                received = await self._take(data)
            except UnknownAuthorError as exc:
                if attempt == 0:
                    try:
                        await self.device_list(exc.account, refresh=True)
                        continue
                    except ClientError as fetch_error:
                        exc = fetch_error  # type: ignore[assignment]
                notice = f"dropped a group update: {exc}"
            except DuplicateMessageError:
                pass  # decrypted and stored in an earlier run; only the ack was lost
            except CrossPending as exc:  # its sender's list cannot be fetched now: keep it
                return _notice(f"a message from the other transport waits in the mailbox "
                               f"until its sender can be checked ({exc})")
            except (RemoteProtocolError, ClientError, ValueError, TypeError,
                    OverflowError) as exc:
                # Nothing was committed (the transaction rolled back); acknowledging drops a
                # message that could never be read, instead of wedging the mailbox behind it.
                notice = f"dropped a message that cannot be read: {exc}"
            break
        if notice is not None:
            log.warning(notice)
        try:
            await self.connection.request("ack", seqs=[seq])
        except ServerError as exc:  # stored here already: a redelivery will be recognised
            log.warning("the relay did not take an acknowledgement: %s", exc)
        if notice is not None:
            return _notice(notice)
        return received

    async def _take(self, data: Any) -> Received | None:
        """Decrypt and store one delivery in one commit; what to show (None: nothing new)."""
        assert self.address is not None
        delivery = decode_delivery(data)
        if isinstance(delivery, GroupEnvelope):
            with self.state.transaction():
                stored = self._take_group_message(delivery)
                held = self.state.key_changed(stored.sender)  # not the key the user accepted
                new = self.state.add_message(stored, self.client.clock(), held=held)
            if not new:
                return None
            return _notice(_held(stored.sender, 1)) if held else self._as_received(stored)
        envelope = delivery
        if envelope.recipient != self.address:
            raise ClientError("a delivery addressed to another device")
        sender = envelope.sender
        if envelope.prekey is not None:
            await self._check_sender_key(sender, envelope.prekey.identity_key)
        proven = False
        received = None
        with self.state.transaction():
            payload = Payload.decode(self.cipher.decrypt(envelope))
            taken_before = self.state.has_message(payload.id)  # under another ratchet message
            # Under an account key the user has not accepted: stored, shown only as a notice,
            # and nothing it says changes this device's state (device lists, group membership).
            held = self.state.key_changed(sender.account)
            quiet = payload.kind in _QUIET_KINDS
            text = (self._keep_media(payload) if payload.kind == MEDIA_KIND
                    else _display_text(payload))
            peer = payload.fields.get("to") if sender.account == self.address.account else None
            peer = peer if isinstance(peer, str) else sender.account
            if held and payload.kind in (GROUP_UPDATE_KIND, "device_sync", PROFILE_KIND,
                                         STATUS_KIND):
                quiet = True  # acted on by no one until accepted; the user sees the notice
            elif payload.kind == "device_sync" and sender.account == self.address.account:
                self._apply_device_sync(payload)
                proven = self._proves_link(payload)
            elif payload.kind == SENDER_KEY_KIND and not taken_before:
                self._take_sender_key(sender, payload)
            elif payload.kind == GROUP_UPDATE_KIND and not taken_before:
                text = self._take_group_update(sender, payload)
                quiet = text is None
                peer = group_peer(GroupUpdate.from_payload(payload).state.group_id)
            elif payload.kind in (PROFILE_KIND, STATUS_KIND):
                quiet = True  # kept in the profile book, not shown as a message
                if not taken_before and not is_foreign(sender.account):
                    self._take_profile_payload(sender.account, payload)
            message = StoredMessage(payload.id, sender.account, sender.device_id, peer,
                                    payload.ts, payload.kind,
                                    text if isinstance(text, str) else None)
            if self.state.add_message(message, self.client.clock(), seen=quiet,
                                      held=held and not quiet) and not quiet:
                received = (_notice(_held(sender.account, 1)) if held
                            else self._as_received(message))
        self._link_proven |= proven  # only once the sync is committed
        return received

    def _as_received(self, message: StoredMessage) -> Received:
        """A stored message as shown: a group message names its group."""
        assert self.address is not None
        outgoing = message.sender == self.address.account
        group_id = peer_group_id(message.peer)
        if group_id is None:
            return from_stored(message, outgoing)
        held = self.state.groups.get(group_id)
        name = None if held is None else held.state.name
        return from_stored(message, outgoing, group=name or group_id.hex()[:8])

    async def _check_sender_key(self, sender: Address, identity: Ed25519PublicKey) -> None:
        """A new session's device key must be in the sender account's signed device list."""
        listed = (await self.device_list(sender.account)).identity_of(sender.device_id)
        if listed != identity:
            listed = (await self.device_list(sender.account, refresh=True)).identity_of(
                sender.device_id)
        if listed != identity:
            raise ClientError(f"{sender} is not a device of {sender.account!r}'s signed list")


def _display_text(payload: Payload) -> str | None:
    """The line shown for a payload: its text, or a description of a reaction."""
    fields = payload.fields
    if payload.kind == "text" and isinstance(fields.get("text"), str):
        return fields["text"]
    if payload.kind == "reaction" and isinstance(fields.get("target"), bytes):
        target = fields["target"].hex()[:12]
        emoji = fields.get("emoji")
        if isinstance(emoji, str) and emoji:
            return f"[reacted {emoji} to {target}]"
        return f"[removed a reaction to {target}]"
    if payload.kind == "device_sync":
        return "[device sync]"
    return None


def _held(account: str, count: int) -> str:
    """The notice for messages held because ``account``'s key change is not accepted."""
    what, verb, them = ("a message", "is", "it") if count == 1 else (
        f"{count} messages", "are", "them")
    return (f"{what} from {account!r} {verb} held: its account key changed; check the safety "
            f"number with 'e2e-chat verify {account}', then 'e2e-chat verify {account} "
            f"--accept' releases {them}")


def _notice(text: str) -> Received:
    return Received("", 0, "", b"", 0, "notice", None, warning=text)

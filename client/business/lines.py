"""The business's two lines: its private account (a linked device) and its social account.

A :class:`Line` keeps one session to its server while the inbox runs, reconnecting with backoff
after a loss, and records what the client library shows into the inbox's store: the library
has already decrypted it, committed it to the home (files saved in ``HOME/files/``) and
acknowledged it, and shows it again after a crash until it is marked shown, which happens only
after :meth:`Line.take` returned (the store deduplicates by message id). Replies go out through
the live session (or a connection of their own while it is down), one call at a time per line.

Only one-to-one conversations are taken: group messages are left to the business's other
devices. On the private transport every conversation is end-to-end encrypted; on the social one
only secret conversations are, and one that became secret stays so.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.media import MEDIA_KIND

from ..cli.common import first_leaf
from ..core.files import FileRecord
from ..core.live_account import LOST, LiveAccount
from ..private.received import Received
from ..private.session import PrivateClient, PrivateSession
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialEvent
from .changes import Changes
from .store import Attachment, InboxStore

log = logging.getLogger("e2e.business")

RECONNECT_START, RECONNECT_MAX = 0.5, 10.0
"""Seconds before the first reconnection, and the most between two."""

ClientT = TypeVar("ClientT", PrivateClient, SocialClient)
SessionT = TypeVar("SessionT", PrivateSession, SocialSession)


class ReplyFailed(Exception):
    """A reply could not be sent; the message says why, for the agent."""


def attachment(record: FileRecord | None) -> Attachment | None:
    """What the inbox keeps of a file a message carried."""
    if record is None:
        return None
    media = record.media
    return Attachment(media.name, media.mime, media.size, record.path, record.error)


class Line(LiveAccount[ClientT, SessionT]):
    """One transport's account of the business, kept connected (see the module docstring)."""

    logger = log

    def __init__(self, client: ClientT, store: InboxStore, changes: Changes,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(client, RECONNECT_START, RECONNECT_MAX)
        self.store = store
        self.changes = changes
        self.clock = clock

    async def receive(self, session: SessionT) -> None:
        """Record what the session shows into the store until it is lost."""
        await session.receive(self.take, math.inf)

    async def reply(self, peer: str, text: str, author: str) -> int:
        """Send ``text`` to ``peer`` as written by the agent ``author``; the conversation's id.

        :class:`ReplyFailed` when the transport refuses it or cannot be reached.
        """
        try:
            async with self.session() as session:
                origin = await self._send(session, peer, text)
        except Exception as error:  # bare, or inside the connection's exception group
            leaf = first_leaf(error)
            if isinstance(leaf, LOST):
                raise ReplyFailed(str(leaf)) from None
            raise
        conversation = self.store.conversation_for(self.transport, peer,
                                                   self.end_to_end(peer), self.clock())
        self.store.add_message(conversation, origin, False, self.clock(), text, author=author)
        self.changes.changed()
        return conversation

    def record(self, peer: str, origin: str, incoming: bool, text: str | None,
               file: FileRecord | None, end_to_end: bool) -> None:
        """Keep one message of the conversation with ``peer`` and tell the pages."""
        now = self.clock()
        conversation = self.store.conversation_for(self.transport, peer, end_to_end, now)
        if self.store.add_message(conversation, origin, incoming, now, text,
                                  attachment(file)) is not None:
            self.changes.changed()

    @abc.abstractmethod
    def take(self, item: Any) -> None:
        """Record what the session shows (a message, or something to skip)."""

    @abc.abstractmethod
    async def _send(self, session: SessionT, peer: str, text: str) -> str:
        """Send a text; the transport's id of the message."""

    @abc.abstractmethod
    def end_to_end(self, peer: str) -> bool:
        """Whether the conversation with ``peer`` is end-to-end encrypted."""


class PrivateLine(Line[PrivateClient, PrivateSession]):
    """The business's private account, on the relay (``HOME/state.db``): always end to end."""

    transport = PRIVATE

    def take(self, item: Received) -> None:
        """Record a text or file message of a one-to-one conversation (sent by the customer,
        or by another device of the business)."""
        if item.warning is not None:
            log.warning("private: %s", item.warning)
            return
        if item.group is not None or item.kind not in ("text", MEDIA_KIND):
            return
        self.record(item.peer, item.id.hex(), not item.outgoing, item.text, item.file, True)

    async def _send(self, session: PrivateSession, peer: str, text: str) -> str:
        return (await session.send_text(peer, text)).id.hex()

    def end_to_end(self, peer: str) -> bool:
        """Always: the private transport has nothing else."""
        return True


class SocialLine(Line[SocialClient, SocialSession]):
    """The business's social account (``HOME/social.db``): end to end in secret conversations."""

    transport = SOCIAL

    def take(self, item: SocialEvent) -> None:
        """Record a message of a one-to-one conversation; note a conversation made secret.

        A message from the customer names the customer as its conversation; one sent from
        another device of the business is taken only in a conversation the inbox holds (a
        group's name could stand there otherwise).
        """
        if item.warning is not None:
            log.warning("social: %s", item.warning)
            return
        peer = item.conversation
        if item.kind == "secret":
            self.store.conversation_for(SOCIAL, peer, True, self.clock())
            self.changes.changed()
            return
        if item.kind != "message" or item.message is None:
            return
        incoming = item.sender != self.account
        if incoming and peer != item.sender:
            return  # a group's message
        if not incoming and not self.store.has_conversation(SOCIAL, peer):
            return
        text = item.file.media.caption if item.file is not None else item.text
        self.record(peer, str(item.message), incoming, text, item.file,
                    item.secret or self.end_to_end(peer))

    async def _send(self, session: SocialSession, peer: str, text: str) -> str:
        return str(await session.send_text(peer, text))

    def end_to_end(self, peer: str) -> bool:
        """Whether this device knows the conversation with ``peer`` is secret."""
        return self.client.state.is_secret(peer)

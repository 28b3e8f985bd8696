"""A message as shown to the user (:class:`Received`), sent or received."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.files import FileRecord
from .state import StoredMessage


@dataclass(frozen=True, slots=True)
class Received:
    """A message as shown to the user; ``warning`` is set for a notice instead of a message.

    A ``media`` message has its ``file`` (``text`` is its caption).
    """

    sender: str
    sender_device: int
    peer: str
    id: bytes
    ts: int
    kind: str
    text: str | None
    outgoing: bool = False
    warning: str | None = None
    file: FileRecord | None = None
    group: str | None = None
    """The group's name, for a group message."""


def from_stored(message: StoredMessage, outgoing: bool, group: str | None = None) -> Received:
    """The stored ``message`` as shown; ``outgoing`` when this account sent it; ``group``: the
    name of the group it was sent in."""
    return Received(message.sender, message.sender_device, message.peer, message.id, message.ts,
                    message.kind, message.text, outgoing, group=group)

"""A message as shown to the user (:class:`Received`), sent or received."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.files import FileRecord
from .state import StoredMessage

if TYPE_CHECKING:
    from ..core.calls import CallInfo


@dataclass(frozen=True, slots=True)
class Received:
    """A message as shown to the user; ``warning`` is set for a notice instead of a message.

    A ``media`` message has its ``file`` (``text`` is its caption); a ring (kind ``call``,
    ``id`` the call's id) has the ``call`` it announces.
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
    call: CallInfo | None = None


def from_stored(message: StoredMessage, outgoing: bool, group: str | None = None) -> Received:
    """The stored ``message`` as shown; ``outgoing`` when this account sent it; ``group``: the
    name of the group it was sent in."""
    return Received(message.sender, message.sender_device, message.peer, message.id, message.ts,
                    message.kind, message.text, outgoing, group=group)

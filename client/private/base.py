"""What every part of a :class:`~client.private.session.PrivateSession` holds: its client and
state, the relay connection and its challenge, the authenticated address and pending notices.

The session is composed of one class per concept (prekeys, linking, device lists, sending,
receiving), each a subclass of :class:`SessionBase` that reads and sets these attributes and
calls the other parts' methods through ``self``: the composed session has them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from e2e_proto.address import Address
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.session import SessionCipher

from ..core.calls import CallBook
from ..core.connection import Connection

if TYPE_CHECKING:
    from .session import PrivateClient


class SessionBase:
    """The state of one relay connection that the session's parts share."""

    def __init__(self, client: PrivateClient, connection: Connection, nonce: bytes) -> None:
        self.client = client
        self.state = client.state
        self.connection = connection
        self.nonce = nonce
        self.address: Address | None = None
        self.notices: list[str] = []
        self._pending_link: tuple[str, Ed25519PublicKey] | None = None
        self._link_secret = b""
        self._link_proven = False
        self.backlog_drained = False
        """Whether the relay's one ``queue_empty`` push of this connection was seen."""
        self.call_book = CallBook()
        """The calls this session takes part in (:mod:`.calls`)."""

    @property
    def cipher(self) -> SessionCipher:
        """The session cipher of this device."""
        assert self.address is not None
        return SessionCipher(self.state.protocol, self.address, self.client.random)

"""What every part of a :class:`~client.social.session.SocialSession` holds: its client and
state, the connection and the logged-in address; and :meth:`SessionBase.request`, which turns a
refusal into a :class:`~client.social.errors.SocialError`.

The session is composed of one class per concept (conversations, secret conversations,
reactions and pins, history and search, receiving), each a subclass of :class:`SessionBase`
that calls the other parts' methods through ``self``: the composed session has them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto.address import Address

from ..core.calls import CallBook
from ..core.connection import Connection, ServerError
from .errors import refused

if TYPE_CHECKING:
    from .session import SocialClient


class SessionBase:
    """The state of one social connection that the session's parts share."""

    def __init__(self, client: SocialClient, connection: Connection) -> None:
        self.client = client
        self.state = client.state
        self.connection = connection
        self.address: Address | None = None
        self.call_book = CallBook()
        """The calls this session takes part in (:mod:`.calls`)."""

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A request whose refusal becomes a one-line :class:`ClientError` (code kept)."""
        try:
            return await self.connection.request(kind, **fields)
        except ServerError as exc:
            raise refused(exc) from None

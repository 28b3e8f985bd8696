"""Messages to the other transport, kept on the device until the other server has them.

A cross-transport send reaches the other server through this device's own server and the link
between them; when either is down it cannot be stored anywhere yet. So the payload is kept here
first (the ``cross_outbox`` table of the device's state, sealed with a passphrase) and sent, in
order, now or by a later command; it leaves the table once the send was taken. A resend after
a lost answer carries the same payload id (and so the same ``client_id``): the other server
keeps it once, and receivers drop a payload id they have seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .errors import ClientError

if TYPE_CHECKING:
    from .protocol_store import SqliteProtocolStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS cross_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE, recipient TEXT NOT NULL,
    payload BLOB NOT NULL);
"""


class CrossPending(ClientError):
    """The send could not reach the other server now; the message is kept and sent later."""


class PendingSend(NamedTuple):
    """A kept send: its payload id, the foreign recipient and the encoded (padded) payload."""

    id: bytes
    recipient: str
    payload: bytes


class CrossOutbox:
    """The ``cross_outbox`` table of a device's state."""

    def __init__(self, protocol: SqliteProtocolStore) -> None:
        self._protocol = protocol
        self._db = protocol.connection
        self._db.executescript(SCHEMA)

    def add(self, payload_id: bytes, recipient: str, payload: bytes) -> None:
        """Keep a send (in the caller's transaction)."""
        self._db.execute("INSERT OR IGNORE INTO cross_outbox (id, recipient, payload) "
                         "VALUES (?, ?, ?)", (payload_id, recipient,
                                              self._protocol.seal(payload, _place(payload_id))))

    def pending(self) -> list[PendingSend]:
        """The kept sends, oldest first."""
        return [PendingSend(i, r, self._protocol.unseal(p, _place(i))) for i, r, p in
                self._db.execute("SELECT id, recipient, payload FROM cross_outbox ORDER BY seq")]

    def remove(self, payload_id: bytes) -> None:
        """Forget a send that was taken (or refused for good)."""
        self._db.execute("DELETE FROM cross_outbox WHERE id = ?", (payload_id,))


def _place(payload_id: bytes) -> str:
    return f"cross_outbox/{payload_id.hex()}"

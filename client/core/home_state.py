"""A device's home folder (mode 0700) and its one SQLite state file, sealed if given a passphrase.

Each transport's client keeps its own file there: the protocol store's tables
(:class:`~client.core.protocol_store.SqliteProtocolStore`) and the client's own, in one database,
so that a decrypted message and the ratchet step that decrypted it commit together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from e2e_proto.at_rest import INTERACTIVE

from .files import FileStore
from .protocol_store import SqliteProtocolStore


class HomeState:
    """One SQLite state file in a home folder (made mode 0700), sealed if given a passphrase.

    A subclass names its file (``state_file``) and the tables it adds to the protocol store's
    (``schema``); the private and the social client each keep one.
    """

    state_file: ClassVar[str]
    schema: ClassVar[str]

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.protocol = SqliteProtocolStore(self.home / self.state_file, passphrase, cost)
        self.db = self.protocol.connection
        self.db.executescript(self.schema)
        self.files = FileStore(self.protocol, self.home)
        """Attachments: the ``files`` tables and the ``files/`` and ``outgoing/`` folders."""

    def close(self) -> None:
        """Close the database."""
        self.protocol.close()

"""A device's home folder (mode 0700) and its one SQLite state file, sealed if given a passphrase.

Each transport's client keeps its own file there: the protocol store's tables
(:class:`~client.core.protocol_store.SqliteProtocolStore`) and the client's own, in one database,
so that a decrypted message and the ratchet step that decrypted it commit together. With a
passphrase, message-like columns (texts, reactions, file metadata) are sealed like the keys
(:mod:`.sealed_columns`): each subclass lists its own in ``sealed_columns`` and reads and writes
them through :meth:`HomeState.seal_text` and :meth:`HomeState.unseal_text`, and the file tables
(:class:`~client.core.files.FileStore`) seal theirs; values a home stored in the clear before
are sealed when it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from e2e_proto.at_rest import INTERACTIVE

from .files import SEALED_FILE_COLUMNS, FileStore
from .protocol_store import SqliteProtocolStore
from .sealed_columns import SealedColumn, seal_clear_texts, seal_text, unseal_text


class HomeState:
    """One SQLite state file in a home folder (made mode 0700), sealed if given a passphrase.

    A subclass names its file (``state_file``), the tables it adds to the protocol store's
    (``schema``), its sealed text columns (``sealed_columns``) and what an older file needs
    (:meth:`migrate`); the private and the social client each keep one. A state that fails to
    open closes its database before the error propagates.
    """

    state_file: ClassVar[str]
    schema: ClassVar[str]
    sealed_columns: ClassVar[tuple[SealedColumn, ...]] = ()

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.protocol = SqliteProtocolStore(self.home / self.state_file, passphrase, cost)
        self.db = self.protocol.connection
        try:
            self.db.executescript(self.schema)
            self.files = FileStore(self.protocol, self.home)
            """Attachments: the ``files`` tables and the ``files/`` and ``outgoing/`` folders."""
            self.migrate()
            seal_clear_texts(self.protocol, (*self.sealed_columns, *SEALED_FILE_COLUMNS))
        except BaseException:
            self.protocol.close()
            raise

    def migrate(self) -> None:
        """Bring a file made by an earlier version up to this schema (nothing by default)."""

    def seal_text(self, column: SealedColumn, row: object, text: str | None) -> str | bytes | None:
        """``text`` of ``column`` in the row named ``row``, as stored: sealed with a passphrase."""
        return seal_text(self.protocol, column, row, text)

    def unseal_text(self, column: SealedColumn, row: object, stored: object) -> str | None:
        """Inverse of :meth:`seal_text`."""
        return unseal_text(self.protocol, column, row, stored)

    def close(self) -> None:
        """Close the database."""
        self.protocol.close()


"""A device's home folder (mode 0700) and its one SQLite state file, sealed if given a passphrase.

Each transport's client keeps its own file there: the protocol store's tables
(:class:`~client.core.protocol_store.SqliteProtocolStore`) and the client's own, in one database,
so that a decrypted message and the ratchet step that decrypted it commit together. With a
passphrase, message-like columns (texts, reactions, file metadata) are sealed like the keys:
each subclass lists them in ``sealed_columns`` and reads and writes them through
:meth:`HomeState.seal_text` and :meth:`HomeState.unseal_text`; values a home stored in the clear
before are sealed when it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, NamedTuple

from e2e_proto.at_rest import INTERACTIVE

from .files import FileStore
from .protocol_store import SqliteProtocolStore


class SealedColumn(NamedTuple):
    """A text column sealed at rest, and the column that names its row (the sealing's place)."""

    table: str
    key: str
    column: str


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
            self._seal_clear_texts()
        except BaseException:
            self.protocol.close()
            raise

    def migrate(self) -> None:
        """Bring a file made by an earlier version up to this schema (nothing by default)."""

    def seal_text(self, column: SealedColumn, row: object, text: str | None) -> str | bytes | None:
        """``text`` of ``column`` in the row named ``row``, as stored: sealed with a passphrase."""
        if text is None or not self.protocol.sealed:
            return text
        return self.protocol.seal(text.encode(), _place(column, row))

    def unseal_text(self, column: SealedColumn, row: object, stored: object) -> str | None:
        """Inverse of :meth:`seal_text`."""
        if stored is None or not self.protocol.sealed:
            return stored  # type: ignore[return-value]
        return self.protocol.unseal(stored, _place(column, row)).decode()  # type: ignore[arg-type]

    def _seal_clear_texts(self) -> None:
        """Seal the texts a home stored in the clear before its message texts were sealed."""
        if not self.protocol.sealed:
            return
        with self.protocol.transaction():
            for column in self.sealed_columns:
                table, key, name = column
                rows = self.db.execute(f'SELECT "{key}", "{name}" FROM "{table}" '
                                       f'WHERE typeof("{name}") = \'text\'').fetchall()
                self.db.executemany(
                    f'UPDATE "{table}" SET "{name}" = ? WHERE "{key}" = ?',
                    [(self.seal_text(column, row, text), row) for row, text in rows])

    def close(self) -> None:
        """Close the database."""
        self.protocol.close()


def _place(column: SealedColumn, row: object) -> str:
    """Where a sealed text lives: ``table/row/column``, the row as hex when it is bytes."""
    name = row.hex() if isinstance(row, bytes) else str(row)
    return f"{column.table}/{name}/{column.column}"

"""Text columns sealed at rest: each value bound to the place it is stored in.

A :class:`SealedColumn` names a table, the column that names a row, and the text column. With a
passphrase, a value is sealed by the protocol store's at-rest key
(:meth:`~client.core.protocol_store.SqliteProtocolStore.seal`) with its place
``table/row/column`` (the row as hex when it is bytes) as associated data, so a sealed value
copied to another row or column does not open; without one, values stay text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .protocol_store import SqliteProtocolStore


class SealedColumn(NamedTuple):
    """A text column sealed at rest, and the column that names its row (the sealing's place)."""

    table: str
    key: str
    column: str


def seal_text(protocol: SqliteProtocolStore, column: SealedColumn, row: object,
              text: str | None) -> str | bytes | None:
    """``text`` of ``column`` in the row named ``row``, as stored: sealed with a passphrase."""
    if text is None or not protocol.sealed:
        return text
    return protocol.seal(text.encode(), sealed_place(column, row))


def unseal_text(protocol: SqliteProtocolStore, column: SealedColumn, row: object,
                stored: object) -> str | None:
    """Inverse of :func:`seal_text`."""
    if stored is None or not protocol.sealed:
        return stored  # type: ignore[return-value]
    return protocol.unseal(stored, sealed_place(column, row)).decode()  # type: ignore[arg-type]


def seal_clear_texts(protocol: SqliteProtocolStore, columns: tuple[SealedColumn, ...]) -> None:
    """Seal the values of ``columns`` still stored in the clear (a home made before they were
    sealed, now opened with its passphrase); nothing without one."""
    if not protocol.sealed:
        return
    db = protocol.connection
    with protocol.transaction():
        for column in columns:
            table, key, name = column
            rows = db.execute(f'SELECT "{key}", "{name}" FROM "{table}" '
                              f'WHERE typeof("{name}") = \'text\'').fetchall()
            db.executemany(f'UPDATE "{table}" SET "{name}" = ? WHERE "{key}" = ?',
                           [(seal_text(protocol, column, row, text), row) for row, text in rows])


def sealed_place(column: SealedColumn, row: object) -> str:
    """Where a sealed text lives: ``table/row/column``, the row as hex when it is bytes."""
    name = row.hex() if isinstance(row, bytes) else str(row)
    return f"{column.table}/{name}/{column.column}"

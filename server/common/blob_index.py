"""What a server records about its blobs (never their bytes): the :class:`BlobIndex` interface
and the ``blobs`` table both SQLite stores keep.

Invariant: a blob's bytes live in a file of its server's blob folder
(:mod:`server.common.blobs`), never in a database row; the index holds one row per blob, its
owner (the uploading account), its declared size, when its upload began and whether it is
complete (its SHA-256 checked against its id). How far an unfinished upload got is the length
of its part file, not a column: a column would cost a commit per chunk, and after a crash the
file is the truth anyway. Who may download a blob is each server's own business (the relay
grants devices, the social server follows its messages), kept beside this table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from storage.sqlite import immediate_transaction

from .store_base import storage

BLOB_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    blob_id BLOB PRIMARY KEY, owner TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, complete INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS blobs_by_owner ON blobs (owner, complete);
CREATE INDEX IF NOT EXISTS blobs_by_age ON blobs (created);
"""


class BlobRecord(NamedTuple):
    """One blob as its server knows it."""

    blob_id: bytes
    owner: str
    size: int
    """The declared ciphertext size, in bytes."""
    created: float
    """When its upload began (seconds since the epoch); its TTL counts from here."""
    complete: bool


class BlobTakenError(Exception):
    """Another account began or holds a blob with this id."""


class BlobQuotaError(Exception):
    """An account would hold more blob bytes, or more unfinished uploads, than allowed."""

    def __init__(self, message: str, used: int, limit: int) -> None:
        super().__init__(message)
        self.used = used
        self.limit = limit


class BlobIndex(Protocol):
    """A server's record of its blobs; every change is committed before the method returns.

    Asynchronous, as the relay's stores are (its Redis store keeps this record in Redis); the
    SQLite indexes answer without waiting.
    """

    async def begin_blob(self, blob_id: bytes, owner: str, size: int, now: float,
                         quota: int, max_pending: int) -> BlobRecord:
        """Record an upload ``owner`` begins; the existing record when ``owner`` began it before.

        :class:`BlobTakenError` when another account has the id; :class:`BlobQuotaError` when
        the owner's blobs would pass ``quota`` bytes or it has ``max_pending`` unfinished
        uploads already. A refused call records nothing.
        """
        ...

    async def blob(self, blob_id: bytes) -> BlobRecord | None:
        """The record of ``blob_id``."""
        ...

    async def complete_blob(self, blob_id: bytes) -> None:
        """Mark a blob complete: its bytes are all there and hash to its id."""
        ...

    async def delete_blob(self, blob_id: bytes) -> None:
        """Forget a blob (and whatever the server recorded about who may fetch it)."""
        ...

    async def expire_blobs(self, complete_before: float, incomplete_before: float
                           ) -> list[bytes]:
        """Forget complete blobs begun before ``complete_before`` and unfinished ones begun
        before ``incomplete_before``; their ids, so the caller can delete their files."""
        ...


def _record(row: Sequence[object] | None) -> BlobRecord | None:
    if row is None:
        return None
    blob_id, owner, size, created, complete = row
    return BlobRecord(blob_id, owner, size, created, bool(complete))  # type: ignore[arg-type]


class SqliteBlobIndex:
    """:class:`BlobIndex` as the ``blobs`` table of a server's own database connection.

    The server's store makes it on its connection (after creating its own tables) and exposes
    it; a server with more to record about downloads subclasses it.
    """

    schema = BLOB_SCHEMA

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(self.schema)

    @storage
    async def begin_blob(self, blob_id: bytes, owner: str, size: int, now: float,
                         quota: int, max_pending: int) -> BlobRecord:
        """Record an upload ``owner`` begins; the existing record when it began it before."""
        with immediate_transaction(self._db) as db:
            found = _record(db.execute("SELECT blob_id, owner, size, created, complete FROM "
                                       "blobs WHERE blob_id = ?", (blob_id,)).fetchone())
            if found is not None:
                if found.owner != owner:
                    raise BlobTakenError("another account holds this blob id")
                return found
            used, pending = db.execute(
                "SELECT COALESCE(SUM(size), 0), COALESCE(SUM(complete = 0), 0) FROM blobs "
                "WHERE owner = ?", (owner,)).fetchone()
            if pending >= max_pending:
                raise BlobQuotaError(f"at most {max_pending} unfinished uploads at a time",
                                     used, quota)
            if used + size > quota:
                raise BlobQuotaError(f"the account's files would take {used + size} bytes, "
                                     f"more than its quota of {quota}", used, quota)
            record = BlobRecord(blob_id, owner, size, now, False)
            db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?, 0)", record[:4])
        return record

    @storage
    async def blob(self, blob_id: bytes) -> BlobRecord | None:
        """The record of ``blob_id``."""
        return _record(self._db.execute(
            "SELECT blob_id, owner, size, created, complete FROM blobs WHERE blob_id = ?",
            (blob_id,)).fetchone())

    @storage
    async def complete_blob(self, blob_id: bytes) -> None:
        """Mark a blob complete."""
        self._db.execute("UPDATE blobs SET complete = 1 WHERE blob_id = ?", (blob_id,))

    @storage
    async def delete_blob(self, blob_id: bytes) -> None:
        """Forget a blob (and what a subclass records about it)."""
        with immediate_transaction(self._db) as db:
            self._forget(db, [blob_id])

    @storage
    async def expire_blobs(self, complete_before: float, incomplete_before: float
                           ) -> list[bytes]:
        """Forget blobs past their TTL; their ids."""
        with immediate_transaction(self._db) as db:
            ids = [row[0] for row in db.execute(
                "SELECT blob_id FROM blobs WHERE (complete = 1 AND created < ?) OR "
                "(complete = 0 AND created < ?)", (complete_before, incomplete_before))]
            self._forget(db, ids)
        return ids

    def _forget(self, db: sqlite3.Connection, blob_ids: Sequence[bytes]) -> None:
        """Delete the rows of ``blob_ids`` inside the caller's transaction (a subclass adds its
        own tables)."""
        db.executemany("DELETE FROM blobs WHERE blob_id = ?", [(b,) for b in blob_ids])

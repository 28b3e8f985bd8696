"""SQLite files as every store here opens them: mode 0600, WAL, synchronous=FULL.

The one place that opens a database file, runs an immediate transaction, adds a column an
older file lacks and deletes for good, for the client's protocol store and both servers'
stores alike.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def open_private_database(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating with mode 0600) an SQLite file in WAL mode with synchronous=FULL."""
    path = Path(path)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def add_missing_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """Add ``column`` (``"name TYPE ..."``) to ``table`` unless it has it: a file made by an
    older version gains a column its ``CREATE TABLE IF NOT EXISTS`` did not add. Whether it was
    added (the caller may then fill it in, in the same transaction)."""
    name = column.split()[0]
    if name in {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}:
        return False
    db.execute(f'ALTER TABLE "{table}" ADD COLUMN {column}')
    return True


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block (or COMMIT) fails.

    SQLite may have rolled back by itself (a full disk): a second ROLLBACK would hide the cause,
    and a failed COMMIT must not leave the transaction open.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def secure_deletion(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Within the block, what is deleted or replaced is overwritten with zeros in the file
    (``PRAGMA secure_delete``); afterwards the WAL is checkpointed and truncated, so that no
    old copy of a page survives in it either. For data a server promised to forget."""
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield db
    finally:
        db.execute("PRAGMA secure_delete = OFF")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

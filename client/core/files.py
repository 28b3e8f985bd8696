"""Attachments in a device's home: the ``files`` and ``outgoing_files`` tables and the folders.

This module owns both tables (in the home's one database, beside the messages they belong to):

* ``files``: one row per attachment a message announced, keyed by the message id as the user
  types it (hex payload id on the private transport, decimal on the social one): the ``media``
  fields, where the file was saved, or why not yet. With a passphrase the key is sealed like
  every secret, and the name, caption, saved path and error like message texts
  (:data:`SEALED_FILE_COLUMNS`).
* ``outgoing_files``: a file being sent, encrypted into ``HOME/outgoing/`` once, so that a send
  that lost its connection resumes its upload instead of encrypting again (a new key would make
  a new blob). Its key is sealed; its ``source`` (the path being sent) is not, as a resumed
  send looks it up by it, and the row goes once the file is sent.

Every sealed key is bound to its row (the place ``files/<message>/key`` or
``outgoing_files/<source>/key``, as :mod:`.sealed_columns` binds texts), so a key copied to
another row does not open. Keys an older home sealed under the one place ``media_key`` are
sealed again under their rows' places when it is opened, once (``file_keys_bound`` records it).

Received files are saved in ``HOME/files/`` only (mode 0700; files 0600), under a name made by
:func:`~e2e_proto.media.safe_file_name` and made unique there (``name (1).ext``, ...): a name
from a message never becomes a path.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from e2e_proto.at_rest import WrongPassphraseError
from e2e_proto.constants import MAX_SAFE_FILE_NAME_BYTES
from e2e_proto.media import MediaPayload, safe_file_name

from .errors import ClientError
from .sealed_columns import SealedColumn, seal_text, sealed_place, unseal_text

if TYPE_CHECKING:
    from .protocol_store import SqliteProtocolStore

FILES_FOLDER = "files"
OUTGOING_FOLDER = "outgoing"
_UNBOUND_KEY_PLACE = "media_key"  # where an older home sealed every key (see _bind_keys)
_MAX_DUPLICATES = 10_000
_MAX_EXTENSION = 16  # characters after the last dot kept after a " (n)" (as safe_file_name)
FILE_NAME = SealedColumn("files", "message", "name")
FILE_CAPTION = SealedColumn("files", "message", "caption")
FILE_PATH = SealedColumn("files", "message", "path")
FILE_ERROR = SealedColumn("files", "message", "error")
SEALED_FILE_COLUMNS = (FILE_NAME, FILE_CAPTION, FILE_PATH, FILE_ERROR)
"""The ``files`` columns sealed at rest with a passphrase (they name or describe the file)."""
FILE_KEY = SealedColumn("files", "message", "key")
OUTGOING_KEY = SealedColumn("outgoing_files", "source", "key")
"""The media key columns: bytes, sealed with a passphrase like the texts, bound to their row."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    message TEXT PRIMARY KEY, blob_id BLOB NOT NULL, key BLOB NOT NULL, header BLOB NOT NULL,
    size INTEGER NOT NULL, mime TEXT NOT NULL, name TEXT, caption TEXT, sha256 BLOB,
    path TEXT, saved_sha256 BLOB, error TEXT);
CREATE TABLE IF NOT EXISTS outgoing_files (
    source TEXT PRIMARY KEY, blob_id BLOB NOT NULL, key BLOB NOT NULL, header BLOB NOT NULL,
    size INTEGER NOT NULL, sha256 BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS file_keys_bound (id INTEGER PRIMARY KEY CHECK (id = 0));
"""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An attachment a message announced, and what became of it on this device."""

    message: str
    media: MediaPayload
    path: str | None = None
    """Where it was saved (``HOME/files/...``), or the sender's own file; None until then."""
    sha256: bytes | None = None
    """SHA-256 of the saved file, computed while it was written."""
    error: str | None = None
    """Why the last download failed (``fetch-file`` retries)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A file encrypted for sending: the blob in ``HOME/outgoing/`` and the secrets it needs."""

    source: str
    blob_id: bytes
    key: bytes
    header: bytes
    size: int
    """Plaintext bytes."""
    sha256: bytes
    """SHA-256 of the plaintext."""
    blob: Path
    """The encrypted file."""


_FILE_COLUMNS = ("message, blob_id, key, header, size, mime, name, caption, sha256, path, "
                 "saved_sha256, error")
_ID = re.compile(r"[0-9a-f]{1,64}")


def private_folder(path: Path) -> Path:
    """``path`` as a folder of this user only (made 0700 if missing); refuses a symlink."""
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or not stat.S_ISDIR(path.lstat().st_mode):
        raise ClientError(f"{path} is not a folder")
    return path


class FileStore:
    """The two tables and two folders of a home (see the module docstring)."""

    def __init__(self, protocol: SqliteProtocolStore, home: Path) -> None:
        self._protocol = protocol
        self._db = protocol.connection
        self._db.executescript(SCHEMA)
        self.home = home
        self._bind_keys()

    def _bind_keys(self) -> None:
        """Seal again, under its row's place, every key an older home sealed under the one
        place ``media_key``; once per home (a key that does not open is left as it is, to fail
        when its file is used, as it would have). A home without a passphrase seals nothing."""
        if self._db.execute("SELECT 1 FROM file_keys_bound").fetchone() is not None:
            return
        store = self._protocol
        with store.transaction():
            for column in (FILE_KEY, OUTGOING_KEY) if store.sealed else ():
                table, row_column, key_column = column
                rebound = []
                for row, stored in self._db.execute(
                        f"SELECT {row_column}, {key_column} FROM {table}").fetchall():
                    try:
                        key = store.unseal(stored, _UNBOUND_KEY_PLACE)
                    except WrongPassphraseError:
                        continue
                    rebound.append((self._seal_key(column, row, key), row))
                self._db.executemany(
                    f"UPDATE {table} SET {key_column} = ? WHERE {row_column} = ?", rebound)
            self._db.execute("INSERT INTO file_keys_bound VALUES (0)")

    def _seal_key(self, column: SealedColumn, row: str, key: bytes) -> bytes:
        return self._protocol.seal(key, sealed_place(column, row))

    def _unseal_key(self, column: SealedColumn, row: str, stored: bytes) -> bytes:
        return self._protocol.unseal(stored, sealed_place(column, row))

    @property
    def folder(self) -> Path:
        """``HOME/files``, where received files are saved."""
        return private_folder(self.home / FILES_FOLDER)

    @property
    def outgoing_folder(self) -> Path:
        """``HOME/outgoing``, where files being sent wait encrypted."""
        return private_folder(self.home / OUTGOING_FOLDER)

    # -- received (and sent) attachments ------------------------------------------------------

    def add(self, message: str, media: MediaPayload, path: str | None = None) -> None:
        """Record the attachment of ``message`` (in the caller's transaction); a message seen
        before keeps its record."""
        store = self._protocol
        self._db.execute(
            f"INSERT OR IGNORE INTO files ({_FILE_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            (message, media.blob_id, self._seal_key(FILE_KEY, message, media.key),
             media.header, media.size, media.mime, seal_text(store, FILE_NAME, message, media.name),
             seal_text(store, FILE_CAPTION, message, media.caption), media.sha256,
             seal_text(store, FILE_PATH, message, path)))

    def _record(self, row: tuple) -> FileRecord:
        (message, blob_id, key, header, size, mime, name, caption, sha256, path, saved,
         error) = row
        store = self._protocol
        media = MediaPayload(blob_id, self._unseal_key(FILE_KEY, message, key), header, size,
                             mime, unseal_text(store, FILE_NAME, message, name),
                             unseal_text(store, FILE_CAPTION, message, caption), sha256)
        return FileRecord(message, media, unseal_text(store, FILE_PATH, message, path), saved,
                          unseal_text(store, FILE_ERROR, message, error))

    def get(self, message: str) -> FileRecord | None:
        """The attachment of ``message``."""
        row = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE message = ?",
                               (message,)).fetchone()
        return None if row is None else self._record(row)

    def find(self, prefix: str) -> FileRecord:
        """The one attachment whose message id starts with ``prefix`` (as ``fetch-file`` takes
        it); :class:`ClientError` when there is none or more than one."""
        prefix = prefix.strip().lower()
        if not _ID.fullmatch(prefix):
            raise ClientError(f"invalid message id {prefix[:40]!r}: use the id recv --json shows")
        rows = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE message LIKE ? "
                                "ORDER BY message LIMIT 2", (prefix + "%",)).fetchall()
        exact = [row for row in rows if row[0] == prefix]
        if len(exact) == 1 or len(rows) == 1:
            return self._record((exact or rows)[0])
        if not rows:
            raise ClientError(f"no file in a message with id {prefix!r} (see recv --json)")
        raise ClientError(f"more than one message id starts with {prefix!r}; give more of it")

    def saved(self, message: str, path: Path, sha256: bytes) -> FileRecord:
        """Record where a download was saved; the record."""
        self._db.execute("UPDATE files SET path = ?, saved_sha256 = ?, error = NULL "
                         "WHERE message = ?",
                         (seal_text(self._protocol, FILE_PATH, message, str(path)), sha256,
                          message))
        record = self.get(message)
        assert record is not None
        return record

    def failed(self, message: str, error: str) -> FileRecord:
        """Record why a download failed; the record."""
        self._db.execute("UPDATE files SET error = ? WHERE message = ?",
                         (seal_text(self._protocol, FILE_ERROR, message, error), message))
        record = self.get(message)
        assert record is not None
        return record

    # -- files being sent ---------------------------------------------------------------------

    def outgoing(self, source: str) -> Outgoing | None:
        """The encrypted file waiting for ``source``, if its blob is still there."""
        row = self._db.execute("SELECT blob_id, key, header, size, sha256 FROM outgoing_files "
                               "WHERE source = ?", (source,)).fetchone()
        if row is None:
            return None
        blob_id, key, header, size, sha256 = row
        found = Outgoing(source, blob_id, self._unseal_key(OUTGOING_KEY, source, key), header,
                         size, sha256, self.outgoing_folder / blob_id.hex())
        if not found.blob.is_file():
            self.forget_outgoing(found)
            return None
        return found

    def add_outgoing(self, outgoing: Outgoing) -> None:
        """Remember an encrypted file until it is sent."""
        self._db.execute("INSERT OR REPLACE INTO outgoing_files VALUES (?, ?, ?, ?, ?, ?)",
                         (outgoing.source, outgoing.blob_id,
                          self._seal_key(OUTGOING_KEY, outgoing.source, outgoing.key),
                          outgoing.header, outgoing.size, outgoing.sha256))

    def forget_outgoing(self, outgoing: Outgoing) -> None:
        """Forget a file that was sent (or whose blob is gone) and remove its blob."""
        self._db.execute("DELETE FROM outgoing_files WHERE source = ?", (outgoing.source,))
        outgoing.blob.unlink(missing_ok=True)


def reserve_name(folder: Path, name: str | None) -> Path:
    """A new, empty file directly in ``folder`` for an attachment that a message names
    ``name``; the caller replaces it with the finished file.

    The name is :func:`safe_file_name` of ``name``; when taken, `` (1)``, `` (2)``... go before
    the extension (the stem cut so the whole stays a valid name). The file is created
    exclusively, mode 0600, without following links.
    """
    safe = safe_file_name(name if name is not None else "")
    stem, dot, extension = safe.rpartition(".")
    if not stem or len(extension) > _MAX_EXTENSION:
        stem, dot, extension = safe, "", ""
    for number in range(_MAX_DUPLICATES):
        if number == 0:
            candidate = safe
        else:
            suffix = f" ({number}){dot}{extension}"
            budget = MAX_SAFE_FILE_NAME_BYTES - len(suffix.encode())
            candidate = stem.encode()[:budget].decode(errors="ignore") + suffix
        try:
            os.close(os.open(folder / candidate,
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except FileExistsError:
            continue
        return folder / candidate
    raise ClientError(f"{folder} holds {_MAX_DUPLICATES} files named like {safe!r} already")

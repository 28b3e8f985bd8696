"""All protocol stores in one SQLite file (WAL mode, file mode 0600, ``secure_delete`` on).

Every write commits before the method returns, so state is durable before the caller
acknowledges a message. Sessions are also kept decoded in memory, so that the hot path does not
parse a record per message; a new store object on the same file resumes every session. Deleted
rows are overwritten (``secure_delete``) and the WAL is checkpointed and truncated on close, so
superseded keys do not linger in the files; a store that fails to open closes its connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from e2e_proto.address import Address
from e2e_proto.at_rest import (
    INTERACTIVE,
    SALT_SIZE,
    AtRestKey,
    WrongPassphraseError,
    check_cost,
)
from e2e_proto.errors import LocalProtocolError
from e2e_proto.keys import (
    Ed25519PublicKey,
    IdentityKeyPair,
    OneTimePreKey,
    SignedPreKey,
    X25519PrivateKey,
)
from e2e_proto.primitives import RandomSource, system_random
from e2e_proto.session_record import SessionRecord
from storage.sqlite import add_missing_column, immediate_transaction, open_private_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_identity (
    id INTEGER PRIMARY KEY CHECK (id = 0), seed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    account TEXT NOT NULL, device INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (account, device));
CREATE TABLE IF NOT EXISTS signed_prekeys (
    id INTEGER PRIMARY KEY, private BLOB NOT NULL, signature BLOB NOT NULL, created_at REAL);
CREATE TABLE IF NOT EXISTS one_time_prekeys (id INTEGER PRIMARY KEY, private BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS at_rest (
    id INTEGER PRIMARY KEY CHECK (id = 0), salt BLOB NOT NULL, check_value BLOB NOT NULL,
    opslimit INTEGER, memlimit INTEGER);
CREATE TABLE IF NOT EXISTS sessions (
    account TEXT NOT NULL, device INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (account, device));
"""


class SqliteProtocolStore:
    """Identity, prekey and session stores backed by one SQLite database file.

    With a ``passphrase``, every private key and session is sealed at rest (see
    :mod:`e2e_proto.at_rest`): a new file is set up encrypted with the Argon2id ``cost`` (kept
    beside the salt; an existing file is opened with its own), an existing encrypted file needs
    the same passphrase (:class:`~e2e_proto.at_rest.WrongPassphraseError` otherwise), and a
    plaintext file is not silently mixed with sealed values (:class:`LocalProtocolError`).
    """

    def __init__(self, path: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE,
                 random: RandomSource = system_random) -> None:
        self.path = Path(path)
        self._db = open_private_database(self.path)
        self._closed = False
        try:
            self._db.execute("PRAGMA secure_delete=ON")  # explicitly: builds differ
            self._db.executescript(_SCHEMA)
            add_missing_column(self._db, "signed_prekeys", "created_at REAL")  # before rotation
            add_missing_column(self._db, "at_rest", "opslimit INTEGER")  # before the cost was
            add_missing_column(self._db, "at_rest", "memlimit INTEGER")  # kept with the salt
            self._key = self._unlock(passphrase, cost, random)
        except BaseException:
            self._db.close()
            raise
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)
        self._identity: IdentityKeyPair | None = None
        self._sessions: dict[Address, SessionRecord] = {}
        self._rollback_hooks: list[Callable[[], None]] = []

    def _unlock(self, passphrase: str | None, cost: tuple[int, int],
                random: RandomSource) -> AtRestKey | None:
        row = self._db.execute(
            "SELECT salt, check_value, opslimit, memlimit FROM at_rest").fetchone()
        if row is None and passphrase is None:
            return None
        if row is None:
            if self._holds_secrets():
                raise LocalProtocolError("this state was made without a passphrase")
            salt = random(SALT_SIZE)
            key = AtRestKey.derive(passphrase, salt, cost, random)  # type: ignore[arg-type]
            self._db.execute("INSERT INTO at_rest VALUES (0, ?, ?, ?, ?)",
                             (salt, key.check_value(), *cost))
            return key
        if passphrase is None:
            raise WrongPassphraseError("this state is encrypted: a passphrase is needed")
        salt, check, *stored_cost = row
        known = stored_cost != [None, None]  # None: made before the cost was kept
        used = check_cost(tuple(stored_cost)) if known else cost
        key = AtRestKey.derive(passphrase, salt, used, random)
        key.verify(check)
        if not known:
            self._db.execute("UPDATE at_rest SET opslimit = ?, memlimit = ?", used)
        return key

    def _holds_secrets(self) -> bool:
        """Whether any table of the file (the caller's own included) already holds data."""
        tables = [row[0] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return any(self._db.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone()
                   for table in tables if table != "at_rest")

    def seal(self, value: bytes, place: str) -> bytes:
        """``value`` as stored: sealed when the store has a passphrase, as is otherwise."""
        return value if self._key is None else self._key.seal(value, place.encode())

    def unseal(self, stored: bytes, place: str) -> bytes:
        """Inverse of :meth:`seal`."""
        return stored if self._key is None else self._key.open(stored, place.encode())

    @property
    def sealed(self) -> bool:
        """Whether stored values are sealed (the store has a passphrase)."""
        return self._key is not None

    def close(self) -> None:
        """Checkpoint the WAL into the file and truncate it, then close the database (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    # -- identity -----------------------------------------------------------------------------

    def has_identity(self) -> bool:
        """Whether an identity key pair was set."""
        return self._db.execute("SELECT 1 FROM local_identity").fetchone() is not None

    def set_identity_key_pair(self, identity: IdentityKeyPair) -> None:
        """Set this device's identity once; a second, different one is refused."""
        row = self._db.execute("SELECT seed FROM local_identity").fetchone()
        if row is not None and self.unseal(row[0], "identity") != identity.seed:
            raise LocalProtocolError("this store already has a different identity")
        self._db.execute("INSERT OR IGNORE INTO local_identity VALUES (0, ?)",
                         (self.seal(identity.seed, "identity"),))
        self._identity = identity

    def identity_key_pair(self) -> IdentityKeyPair:
        """This device's identity (DIK)."""
        if self._identity is None:
            row = self._db.execute("SELECT seed FROM local_identity").fetchone()
            if row is None:
                raise LocalProtocolError("this store has no identity key pair yet")
            self._identity = IdentityKeyPair(self.unseal(row[0], "identity"))
        return self._identity

    def save_identity(self, address: Address, key: Ed25519PublicKey) -> bool:
        """Remember ``key`` for ``address``; True when it replaced a different key."""
        previous = self.get_identity(address)
        self._db.execute("INSERT OR REPLACE INTO identities VALUES (?, ?, ?)",
                         (address.account, address.device_id, key.raw))
        return previous is not None and previous != key

    def get_identity(self, address: Address) -> Ed25519PublicKey | None:
        """The identity key last saved for ``address``."""
        row = self._db.execute("SELECT key FROM identities WHERE account = ? AND device = ?",
                               address).fetchone()
        return None if row is None else Ed25519PublicKey(row[0])

    # -- prekeys ------------------------------------------------------------------------------

    def load_signed_prekey(self, key_id: int) -> SignedPreKey | None:
        """The signed prekey with this id, if still kept."""
        row = self._db.execute("SELECT private, signature FROM signed_prekeys WHERE id = ?",
                               (key_id,)).fetchone()
        if row is None:
            return None
        private = self.unseal(row[0], f"signed_prekey/{key_id}")
        return SignedPreKey(key_id, X25519PrivateKey(private), row[1])

    def store_signed_prekey(self, prekey: SignedPreKey, created_at: float | None = None) -> None:
        """Keep a signed prekey, made at ``created_at`` (for its rotation; None if unknown)."""
        self._db.execute("INSERT OR REPLACE INTO signed_prekeys VALUES (?, ?, ?, ?)",
                         (prekey.key_id,
                          self.seal(prekey.private_key.raw, f"signed_prekey/{prekey.key_id}"),
                          prekey.signature, created_at))

    def signed_prekey_times(self) -> dict[int, float | None]:
        """The id of every signed prekey kept, and when it was made (None if unknown)."""
        return dict(self._db.execute("SELECT id, created_at FROM signed_prekeys").fetchall())

    def remove_signed_prekey(self, key_id: int) -> None:
        """Forget a replaced signed prekey for good (after its grace period)."""
        self._db.execute("DELETE FROM signed_prekeys WHERE id = ?", (key_id,))

    def load_one_time_prekey(self, key_id: int) -> OneTimePreKey | None:
        """The one-time prekey with this id, unless used or unknown."""
        row = self._db.execute("SELECT private FROM one_time_prekeys WHERE id = ?",
                               (key_id,)).fetchone()
        if row is None:
            return None
        private = self.unseal(row[0], f"one_time_prekey/{key_id}")
        return OneTimePreKey(key_id, X25519PrivateKey(private))

    def store_one_time_prekeys(self, prekeys: Iterable[OneTimePreKey]) -> None:
        """Keep a batch of one-time prekeys (in one transaction)."""
        with self.transaction():
            self._db.executemany("INSERT OR REPLACE INTO one_time_prekeys VALUES (?, ?)",
                                 [(p.key_id, self.seal(p.private_key.raw,
                                                       f"one_time_prekey/{p.key_id}"))
                                  for p in prekeys])

    def remove_one_time_prekey(self, key_id: int) -> None:
        """Forget a one-time prekey for good."""
        self._db.execute("DELETE FROM one_time_prekeys WHERE id = ?", (key_id,))

    def one_time_prekey_ids(self) -> list[int]:
        """Ids of the one-time prekeys still kept."""
        return [r[0] for r in self._db.execute("SELECT id FROM one_time_prekeys ORDER BY id")]

    # -- sessions -----------------------------------------------------------------------------

    def load_session(self, address: Address) -> SessionRecord | None:
        """The session with ``address``, if any."""
        record = self._sessions.get(address)
        if record is None:
            row = self._db.execute("SELECT record FROM sessions WHERE account = ? AND device = ?",
                                   address).fetchone()
            if row is None:
                return None
            record = self._sessions[address] = SessionRecord.from_bytes(
                self.unseal(row[0], f"session/{address}"))
        return record

    def store_session(self, address: Address, record: SessionRecord) -> None:
        """Write the session durably, then keep it decoded in memory."""
        self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)",
                         (address.account, address.device_id,
                          self.seal(record.to_bytes(), f"session/{address}")))
        self._sessions[address] = record

    def delete_session(self, address: Address) -> None:
        """Forget the session with ``address``."""
        self._db.execute("DELETE FROM sessions WHERE account = ? AND device = ?", address)
        self._sessions.pop(address, None)

    def session_devices(self, account: str) -> list[int]:
        """Device ids of ``account`` this device has sessions with."""
        return [r[0] for r in self._db.execute(
            "SELECT device FROM sessions WHERE account = ? ORDER BY device", (account,))]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group writes (of this store and of the caller, on :attr:`connection`) atomically.

        On an exception everything is rolled back and the decoded-session cache is dropped (and
        every cache registered with :meth:`on_rollback`), so memory never runs ahead of the
        file. Transactions do not nest.
        """
        try:
            with immediate_transaction(self._db) as db:
                yield db
        except BaseException:
            self._sessions.clear()
            for forget in self._rollback_hooks:
                forget()
            raise

    def on_rollback(self, forget: Callable[[], None]) -> None:
        """Call ``forget`` whenever a :meth:`transaction` rolls back: another store on this
        file that keeps decoded rows in memory (as this one keeps sessions) drops them."""
        self._rollback_hooks.append(forget)

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection, for callers that keep their own tables in the same file."""
        return self._db

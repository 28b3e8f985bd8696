"""The inbox's own store, ``HOME/inbox.db``: conversations, decrypted messages, agents, sessions.

One SQLite file beside the transports' state files, opened like them (mode 0600, WAL) through
:class:`~client.core.protocol_store.SqliteProtocolStore` so that with ``E2E_PASSPHRASE`` every
message text, caption, file name, saved path and download error is sealed at rest
(:data:`SEALED_COLUMNS`, each value bound to its row and column), as the CLI's home seals its
own. Conversations are keyed by ``(transport, peer)``; a message by its transport's id within
its conversation, so a message seen twice (a redelivery, a restart) is stored once. What
agents did (assignments, replies, closing) and the sessions of logged-in agents live here too;
a session is stored by the SHA-256 of its cookie only, so the file never holds a usable cookie.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from e2e_proto.at_rest import INTERACTIVE
from shared.tokens import token_hash

from ..core.protocol_store import SqliteProtocolStore
from ..core.sealed_columns import SealedColumn, seal_clear_texts, seal_text, unseal_text

STATE_FILE = "inbox.db"
MESSAGE_TEXT = SealedColumn("messages", "id", "text")
FILE_NAME = SealedColumn("messages", "id", "file_name")
FILE_PATH = SealedColumn("messages", "id", "file_path")
FILE_ERROR = SealedColumn("messages", "id", "file_error")
SEALED_COLUMNS = (MESSAGE_TEXT, FILE_NAME, FILE_PATH, FILE_ERROR)
"""The columns sealed at rest with a passphrase: everything a customer or agent wrote."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY, transport TEXT NOT NULL, peer TEXT NOT NULL,
    end_to_end INTEGER NOT NULL, agent TEXT, closed INTEGER NOT NULL DEFAULT 0,
    unread INTEGER NOT NULL DEFAULT 0, last_at REAL NOT NULL, UNIQUE (transport, peer));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, conversation INTEGER NOT NULL REFERENCES conversations (id),
    origin TEXT NOT NULL, incoming INTEGER NOT NULL, author TEXT, at REAL NOT NULL, text TEXT,
    file_name TEXT, file_mime TEXT, file_size INTEGER, file_path TEXT, file_error TEXT,
    UNIQUE (conversation, origin));
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (at);
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY, password_hash BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS agent_sessions (
    token_hash BLOB PRIMARY KEY, agent TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL, created_at REAL NOT NULL, seen_at REAL NOT NULL);
"""
_CONVERSATION_COLUMNS = "id, transport, peer, end_to_end, agent, closed, unread, last_at"
_MESSAGE_COLUMNS = ("id, conversation, origin, incoming, author, at, text, file_name, "
                    "file_mime, file_size, file_path, file_error")
LIST_FILTERS = ("open", "mine", "closed", "all")
"""Which conversations the list shows: open ones, open ones assigned to me, closed, all."""


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation with one customer on one transport."""

    id: int
    transport: str
    peer: str
    end_to_end: bool
    agent: str | None
    closed: bool
    unread: int
    last_at: float


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a message carried: what the sender said of it, and where it was saved."""

    name: str | None
    mime: str
    size: int
    path: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Message:
    """A message of a conversation: from the customer (``incoming``), or to them, written by an
    agent here (``author``) or sent from another device of the business (``author`` None)."""

    id: int
    conversation: int
    origin: str
    incoming: bool
    author: str | None
    at: float
    text: str | None
    file: Attachment | None


@dataclass(frozen=True, slots=True)
class AgentSession:
    """A logged-in agent: the name and the session's CSRF token."""

    agent: str
    csrf: str
    created_at: float
    seen_at: float


class InboxStore:
    """``HOME/inbox.db``, sealed with ``passphrase`` when one is given (see the module)."""

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._protocol = SqliteProtocolStore(self.home / STATE_FILE, passphrase, cost)
        self.db = self._protocol.connection
        try:
            self.db.executescript(_SCHEMA)
            seal_clear_texts(self._protocol, SEALED_COLUMNS)
        except BaseException:
            self._protocol.close()
            raise

    def close(self) -> None:
        """Close the database."""
        self._protocol.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic commit of the writes inside."""
        with self._protocol.transaction():
            yield

    def _seal(self, column: SealedColumn, row: int, text: str | None) -> str | bytes | None:
        return seal_text(self._protocol, column, row, text)

    def _unseal(self, column: SealedColumn, row: int, stored: object) -> str | None:
        return unseal_text(self._protocol, column, row, stored)

    # -- conversations ------------------------------------------------------------------------

    def conversation_for(self, transport: str, peer: str, end_to_end: bool, at: float) -> int:
        """The id of the conversation with ``peer`` on ``transport``, made if new; once
        end-to-end encrypted, it stays so."""
        self.db.execute(
            "INSERT INTO conversations (transport, peer, end_to_end, last_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (transport, peer) DO UPDATE SET "
            "end_to_end = MAX(end_to_end, excluded.end_to_end)",
            (transport, peer, int(end_to_end), at))
        row = self.db.execute("SELECT id FROM conversations WHERE transport = ? AND peer = ?",
                              (transport, peer)).fetchone()
        return int(row[0])

    def has_conversation(self, transport: str, peer: str) -> bool:
        """Whether the inbox holds a conversation with ``peer`` on ``transport``."""
        return self.db.execute("SELECT 1 FROM conversations WHERE transport = ? AND peer = ?",
                               (transport, peer)).fetchone() is not None

    def conversation(self, conversation_id: int) -> Conversation | None:
        """One conversation."""
        row = self.db.execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?",
                              (conversation_id,)).fetchone()
        return None if row is None else _conversation(row)

    def conversations(self, show: str, agent: str, limit: int) -> list[Conversation]:
        """The conversations ``show`` (:data:`LIST_FILTERS`) selects for ``agent``, newest
        first, at most ``limit``."""
        where = {"open": "closed = 0", "mine": "closed = 0 AND agent = ?",
                 "closed": "closed = 1", "all": "1"}[show]
        params: tuple[object, ...] = (agent,) if show == "mine" else ()
        rows = self.db.execute(f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE {where} "
                               "ORDER BY last_at DESC, id DESC LIMIT ?", (*params, limit))
        return [_conversation(row) for row in rows]

    def mark_read(self, conversation_id: int) -> None:
        """An agent saw the conversation: nothing in it is unread."""
        self.db.execute("UPDATE conversations SET unread = 0 WHERE id = ? AND unread != 0",
                        (conversation_id,))

    def assign(self, conversation_id: int, agent: str | None) -> None:
        """Give the conversation to ``agent`` (an agent's name), or to nobody."""
        self.db.execute("UPDATE conversations SET agent = ? WHERE id = ?",
                        (agent, conversation_id))

    def set_closed(self, conversation_id: int, closed: bool) -> None:
        """Close or reopen the conversation (a new message from the customer reopens it)."""
        self.db.execute("UPDATE conversations SET closed = ? WHERE id = ?",
                        (int(closed), conversation_id))

    # -- messages -----------------------------------------------------------------------------

    def add_message(self, conversation_id: int, origin: str, incoming: bool, at: float,
                    text: str | None, file: Attachment | None = None,
                    author: str | None = None) -> int | None:
        """Keep a message (in one commit with what it changes); None when the conversation
        holds its ``origin`` already. A message from the customer counts as unread and
        reopens a closed conversation."""
        with self.transaction():
            if self.db.execute("SELECT 1 FROM messages WHERE conversation = ? AND origin = ?",
                               (conversation_id, origin)).fetchone() is not None:
                return None
            row = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()
            message_id = int(row[0])
            self.db.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, conversation_id, origin, int(incoming), author, at,
                 self._seal(MESSAGE_TEXT, message_id, text),
                 self._seal(FILE_NAME, message_id, file and file.name),
                 file and file.mime, file and file.size,
                 self._seal(FILE_PATH, message_id, file and file.path),
                 self._seal(FILE_ERROR, message_id, file and file.error)))
            self.db.execute(
                "UPDATE conversations SET last_at = MAX(last_at, ?), unread = unread + ?, "
                "closed = CASE WHEN ? THEN 0 ELSE closed END WHERE id = ?",
                (at, int(incoming), int(incoming), conversation_id))
        return message_id

    def messages(self, conversation_id: int, limit: int) -> list[Message]:
        """The newest ``limit`` messages of a conversation, oldest first."""
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation = ? "
                               "ORDER BY id DESC LIMIT ?", (conversation_id, limit)).fetchall()
        return [self._message(row) for row in reversed(rows)]

    def message(self, message_id: int) -> Message | None:
        """One message."""
        row = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?",
                              (message_id,)).fetchone()
        return None if row is None else self._message(row)

    def _message(self, row: tuple) -> Message:
        (message_id, conversation, origin, incoming, author, at, text, name, mime, size, path,
         error) = row
        file = None if mime is None else Attachment(
            self._unseal(FILE_NAME, message_id, name), mime, int(size),
            self._unseal(FILE_PATH, message_id, path), self._unseal(FILE_ERROR, message_id, error))
        return Message(message_id, conversation, origin, bool(incoming), author, at,
                       self._unseal(MESSAGE_TEXT, message_id, text), file)

    def timeline(self) -> list[tuple[str, int, bool, float]]:
        """``(transport, conversation, incoming, at)`` of every message, in order: the only
        columns analytics read (:mod:`.analytics`)."""
        return [(str(t), int(c), bool(i), float(a)) for t, c, i, a in self.db.execute(
            "SELECT c.transport, m.conversation, m.incoming, m.at FROM messages m "
            "JOIN conversations c ON c.id = m.conversation ORDER BY m.at, m.id")]

    # -- agents and their sessions ------------------------------------------------------------

    def set_agent(self, name: str, password_hash: bytes, at: float) -> None:
        """Add an agent, or give one a new password (ending every session of theirs)."""
        with self.transaction():
            self.db.execute("INSERT INTO agents VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                            "SET password_hash = excluded.password_hash", (name, password_hash, at))
            self.db.execute("DELETE FROM agent_sessions WHERE agent = ?", (name,))

    def remove_agent(self, name: str) -> bool:
        """Remove an agent and their sessions (their conversations become unassigned)."""
        with self.transaction():
            self.db.execute("UPDATE conversations SET agent = NULL WHERE agent = ?", (name,))
            self.db.execute("DELETE FROM agent_sessions WHERE agent = ?", (name,))
            return self.db.execute("DELETE FROM agents WHERE name = ?", (name,)).rowcount == 1

    def agents(self) -> list[str]:
        """The agents' names."""
        return [str(row[0]) for row in self.db.execute("SELECT name FROM agents ORDER BY name")]

    def password_hash(self, name: str) -> bytes | None:
        """An agent's stored Argon2id password hash."""
        row = self.db.execute("SELECT password_hash FROM agents WHERE name = ?",
                              (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def add_session(self, token: str, agent: str, csrf: str, at: float) -> None:
        """Remember a login by its cookie ``token`` (stored hashed)."""
        self.db.execute("INSERT INTO agent_sessions VALUES (?, ?, ?, ?, ?)",
                        (token_hash(token.encode()), agent, csrf, at, at))

    def session(self, token: str) -> AgentSession | None:
        """The login a cookie names, if it is still on."""
        row = self.db.execute("SELECT agent, csrf, created_at, seen_at FROM agent_sessions "
                              "WHERE token_hash = ?", (token_hash(token.encode()),)).fetchone()
        return None if row is None else AgentSession(str(row[0]), str(row[1]), row[2], row[3])

    def touch_session(self, token: str, at: float) -> None:
        """Record that a session was used."""
        self.db.execute("UPDATE agent_sessions SET seen_at = ? WHERE token_hash = ?",
                        (at, token_hash(token.encode())))

    def end_session(self, token: str) -> None:
        """Forget a login: its cookie opens nothing any more."""
        self.db.execute("DELETE FROM agent_sessions WHERE token_hash = ?",
                        (token_hash(token.encode()),))

    def end_stale_sessions(self, idle_before: float, created_before: float) -> None:
        """Forget sessions unused since ``idle_before`` or made before ``created_before``."""
        self.db.execute("DELETE FROM agent_sessions WHERE seen_at < ? OR created_at < ?",
                        (idle_before, created_before))


def _conversation(row: tuple) -> Conversation:
    (conversation_id, transport, peer, end_to_end, agent, closed, unread, last_at) = row
    return Conversation(conversation_id, transport, peer, bool(end_to_end), agent, bool(closed),
                        int(unread), float(last_at))

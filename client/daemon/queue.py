"""The daemon's event queue: every event kept in ``HOME/daemon.db`` until a subscriber acks it.

Invariant: an event is committed here before the transport's client marks the message it came
from as shown (so a crash in between shows it again, and its ``key`` finds it queued already),
and it leaves only when a subscriber acknowledges its id. Ids grow and are never reused, so a
subscriber can tell a redelivery by its id. An acknowledged event keeps only its key (a
tombstone, the newest ``kept_keys`` of them), so the same message shown again after a crash is
not queued a second time. Event bodies are sealed at rest like the rest of the home when the
home has a passphrase.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.home_state import HomeState, SealedColumn

STATE_FILE = "daemon.db"
EVENT_BODY = SealedColumn("events", "key", "body")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    body, acked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS events_pending ON events (acked, id);
"""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One queued event: its id (for ``ack``), its name and its parameters."""

    id: int
    name: str
    params: dict[str, Any]


class EventQueue(HomeState):
    """The events waiting for a subscriber's ``ack``, in ``HOME/daemon.db`` (mode 0600)."""

    state_file = STATE_FILE
    schema = _SCHEMA
    sealed_columns = (EVENT_BODY,)

    def __init__(self, home: Any, passphrase: str | None = None, kept_keys: int = 10_000,
                 **kwargs: Any) -> None:
        super().__init__(home, passphrase, **kwargs)
        self.kept_keys = kept_keys
        self.pending_count = int(self.db.execute(
            "SELECT COUNT(*) FROM events WHERE acked = 0").fetchone()[0])
        self._acks_since_prune = 0

    def append(self, key: str, name: str, params: dict[str, Any]) -> int | None:
        """Queue an event (committed on return); its id, or None when ``key`` was queued
        before (the same message shown again)."""
        body = self.seal_text(EVENT_BODY, key, json.dumps(params, ensure_ascii=False))
        cursor = self.db.execute("INSERT OR IGNORE INTO events (key, name, body) "
                                 "VALUES (?, ?, ?)", (key, name, body))
        if cursor.rowcount != 1:
            return None
        self.pending_count += 1
        return int(cursor.lastrowid or 0)

    def pending(self, after: int, limit: int) -> list[QueuedEvent]:
        """Up to ``limit`` unacknowledged events with ids above ``after``, oldest first."""
        rows = self.db.execute("SELECT id, key, name, body FROM events WHERE acked = 0 AND "
                               "id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [QueuedEvent(row_id, name, json.loads(self.unseal_text(EVENT_BODY, key, body)
                                                     or "{}"))
                for row_id, key, name, body in rows]

    def ack(self, ids: Iterable[int]) -> list[int]:
        """Remove the events ``ids`` (keeping their keys); the ids that were queued."""
        wanted = sorted(set(ids))
        acked: list[int] = []
        with self.protocol.transaction():
            for event_id in wanted:
                cursor = self.db.execute("UPDATE events SET acked = 1, body = NULL "
                                         "WHERE id = ? AND acked = 0", (event_id,))
                if cursor.rowcount == 1:
                    acked.append(event_id)
        self.pending_count -= len(acked)
        self._acks_since_prune += len(acked)
        if self._acks_since_prune >= max(1, self.kept_keys // 10):
            self._prune()
        return acked

    def _prune(self) -> None:
        """Forget the keys of all but the newest ``kept_keys`` acknowledged events."""
        self._acks_since_prune = 0
        row = self.db.execute("SELECT id FROM events WHERE acked = 1 ORDER BY id DESC "
                              "LIMIT 1 OFFSET ?", (self.kept_keys,)).fetchone()
        if row is not None:
            self.db.execute("DELETE FROM events WHERE acked = 1 AND id <= ?", (row[0],))

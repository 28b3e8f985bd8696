"""Group commit: mailbox writes that arrive together share one durable SQLite commit.

Part of the SQLite store (:mod:`server.relay.sqlite_store`); Redis batches its own fsyncs.
Every send and acknowledgement must be on disk before the relay answers, and each commit costs
an fsync. The first writer of a round becomes the leader: it yields once, so that every request
already readable on other connections adds its write, then commits them all in one transaction
and wakes the others. Each write still succeeds or fails on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from .store import MailboxWrite

CommitBatch = Callable[[Sequence[MailboxWrite]], list[Exception | None]]
"""Apply writes in one transaction; per write, None or the error that undid it."""


@dataclass(slots=True)
class _Waiting:
    write: MailboxWrite
    done: trio.Event = field(default_factory=trio.Event)
    error: Exception | None = None


class GroupCommit:
    """Batches :class:`~server.relay.store.MailboxWrite` calls into shared commits."""

    def __init__(self, commit: CommitBatch) -> None:
        self.commit = commit
        self._round: list[_Waiting] = []
        self.commits = 0
        self.writes = 0

    async def write(self, write: MailboxWrite) -> None:
        """Apply ``write`` durably; raises the error that undid it (quota, storage)."""
        waiting = _Waiting(write)
        self._round.append(waiting)
        if len(self._round) == 1:
            # Shielded: a leader cancelled half way would strand the others of its round.
            with trio.CancelScope(shield=True):
                await trio.lowlevel.cancel_shielded_checkpoint()  # let this round fill up
                batch, self._round = self._round, []
                errors: list[Exception | None]
                try:
                    errors = self.commit([w.write for w in batch])
                except Exception as exc:  # nothing was committed: every member fails with it
                    errors = [exc] * len(batch)
                finally:
                    self.commits += 1
                    self.writes += len(batch)
                for member, error in zip(batch, errors, strict=True):
                    member.error = error
                    member.done.set()
        else:
            await waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error

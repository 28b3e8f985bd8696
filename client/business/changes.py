"""A version number that moves whenever the inbox's store changes, and a way to wait for it.

The live pages wait on it (:meth:`Changes.wait`) and then fetch what they show again: the
stream tells them *that* something changed, never *what* (no message content travels on it).
A page that was busy while several changes happened sees one newer version, not each change.
"""

from __future__ import annotations

import trio


class Changes:
    """The store's version (see the module docstring)."""

    def __init__(self) -> None:
        self.version = 0
        self._moved = trio.Event()

    def changed(self) -> None:
        """The store changed: wake every waiter."""
        self.version += 1
        self._moved.set()
        self._moved = trio.Event()

    async def wait(self, seen: int) -> int:
        """Return the version once it is other than ``seen`` (at once if it is already)."""
        while self.version == seen:
            await self._moved.wait()
        return self.version

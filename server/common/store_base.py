"""What the relay's and the social server's SQLite stores do the same way.

Each server keeps its own database file; they share this code, not data: the error a storage
fault becomes, and handing out a device's prekey bundle from the ``devices`` and
``one_time_prekeys`` tables both schemas have.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from typing import NamedTuple, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class StoreUnavailableError(Exception):
    """The storage cannot be read or written now (disk full, read-only, locked, corrupt)."""


def storage(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a database failure inside ``method`` into :class:`StoreUnavailableError`.

    The server then answers ``unavailable`` and keeps the connection, instead of dropping it
    as an internal error. Integrity errors are bugs and pass through. ``method`` may be a
    coroutine function (an asynchronous store interface over SQLite). A plain ``try`` in each
    wrapper, not a context manager: these wrap every store call on the relay's hot path.
    """
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def waiting(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)  # type: ignore[misc,no-any-return]
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise StoreUnavailableError(str(exc)) from exc

        return waiting  # type: ignore[return-value]

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailableError(str(exc)) from exc

    return wrapper


class Bundle(NamedTuple):
    """One device's prekey bundle as handed out (the OPK is already deleted), in wire order."""

    device_id: int
    identity_key: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    one_time_prekey_id: int | None
    one_time_prekey: bytes | None


def take_bundle(db: sqlite3.Connection, account: str, device_id: int,
                one_time: bool = True) -> Bundle | None:
    """The device's bundle with its oldest OPK, deleted here (the caller's transaction), or
    with no OPK when not ``one_time``.

    None when the device has published no identity key or signed prekey.
    """
    row = db.execute("SELECT identity_key, spk_id, spk, spk_signature FROM devices "
                     "WHERE account = ? AND device = ?", (account, device_id)).fetchone()
    if row is None or row[0] is None or row[1] is None:
        return None
    if not one_time:
        return Bundle(device_id, *row, None, None)
    opk = db.execute("SELECT id, key FROM one_time_prekeys WHERE account = ? AND device = ? "
                     "ORDER BY id LIMIT 1", (account, device_id)).fetchone()
    if opk is not None:
        db.execute("DELETE FROM one_time_prekeys WHERE account = ? AND device = ? AND id = ?",
                   (account, device_id, opk[0]))
    return Bundle(device_id, *row, *(opk or (None, None)))

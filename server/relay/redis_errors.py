"""What a Redis failure becomes in the relay's Redis store: :class:`StoreUnavailableError`.

Invariant: no Redis or socket error leaves a store method; the relay answers ``unavailable`` and
keeps the connection, as it does for an SQLite store that cannot be written.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from coredis.exceptions import RedisError

from ..common.store_base import StoreUnavailableError

P = ParamSpec("P")
R = TypeVar("R")
SelfT = TypeVar("SelfT")


def unavailable(method: Callable[Concatenate[SelfT, P], Awaitable[R]]
                ) -> Callable[Concatenate[SelfT, P], Awaitable[R]]:
    """Turn a Redis failure inside ``method`` into :class:`StoreUnavailableError`."""

    @functools.wraps(method)
    async def wrapper(self: SelfT, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"redis: {exc}") from exc

    return wrapper

"""Which storage a relay runs on, chosen by ``--store``: its store and its hub, opened together.

``sqlite:PATH`` (the default, one relay process): :class:`~server.relay.sqlite_store.
SqliteRelayStore` and :class:`~server.relay.hub.LocalHub`. ``redis://HOST:PORT/DB`` (any number
of relay processes on one Redis >= 7, DESIGN §17): :class:`~server.relay.redis_store.
RedisRelayStore` and :class:`~server.relay.redis_hub.RedisHub` on one client. This is the one
place that looks at the scheme; everything else sees a :class:`RelayStore` and a :class:`Hub`.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import coredis
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from .hub import Hub, LocalHub
from .redis_hub import RedisHub
from .redis_store import RedisRelayStore
from .sqlite_store import SqliteRelayStore
from .store import RelayStore

REDIS_CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection to Redis."""
REDIS_COMMAND_TIMEOUT = 5.0
"""Seconds a Redis command may take before the request is answered ``unavailable``."""
REDIS_MIN_VERSION = (7, 0)
NODE_ID_SIZE = 8

Backend = tuple[RelayStore, Hub]

# coredis checks every command's arguments at run time unless "optimized" (its documented
# production setting): the relay's commands are fixed in its code and covered by the store
# contract tests, and the checks cost about a tenth of a node's time on the hot path.
coredis.Config.optimized = True


@contextlib.asynccontextmanager
async def _sqlite(path: str) -> AsyncIterator[Backend]:
    store = SqliteRelayStore(path)
    try:
        yield store, LocalHub()
    finally:
        store.close()


@contextlib.asynccontextmanager
async def _redis(url: str) -> AsyncIterator[Backend]:
    client = coredis.Redis.from_url(url, retry_policy=NoRetryPolicy(),
                                    connect_timeout=REDIS_CONNECT_TIMEOUT,
                                    stream_timeout=REDIS_COMMAND_TIMEOUT)
    node = secrets.token_bytes(NODE_ID_SIZE)  # names this process to the other nodes
    store = RedisRelayStore(client, node)
    refusal = None
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
            version = (await client.info("server"))["redis_version"]
            if tuple(int(part) for part in str(version).split(".")[:2]) < REDIS_MIN_VERSION:
                raise RuntimeError(f"Redis {version} is too old; the relay needs Redis >= 7")
            await store.load_scripts()
        except (RedisError, OSError, RuntimeError, ExceptionGroup) as exc:
            refusal = exc  # raised once the client is closed (its task group would wrap it)
        else:
            yield store, RedisHub(client, store, node)
    if refusal is not None:
        raise RuntimeError(str(_first_cause(refusal))) from refusal


def _first_cause(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (coredis's task groups wrap a refused connection)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


_SCHEMES: dict[str, Callable[[str], AbstractAsyncContextManager[Backend]]] = {
    "sqlite:": lambda location: _sqlite(location[len("sqlite:"):]),
    "redis://": _redis,
}


def store_location(text: str) -> str:
    """``--store`` as given, if it names a backend (:class:`argparse.ArgumentTypeError` if not)."""
    for scheme in _SCHEMES:
        if text.startswith(scheme) and len(text) > len(scheme):
            return text
    raise argparse.ArgumentTypeError(f"expected sqlite:PATH or redis://HOST:PORT/DB, got {text!r}")


def is_redis(location: str) -> bool:
    """Whether ``location`` (see :func:`store_location`) is a Redis store (of several nodes)."""
    return location.startswith("redis://")


def open_backend(location: str) -> AbstractAsyncContextManager[Backend]:
    """Open the store and hub that ``location`` (see :func:`store_location`) names."""
    for scheme, opener in _SCHEMES.items():
        if location.startswith(scheme):
            return opener(location)
    raise ValueError(f"no relay store at {location!r}")

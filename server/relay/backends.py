"""Which storage a relay runs on, chosen by ``--store``: its store and its hub, opened together.

``sqlite:PATH`` (the default, one relay process): :class:`~server.relay.sqlite_store.
SqliteRelayStore` and :class:`~server.relay.hub.LocalHub`. This is the one place that looks at
the scheme; everything else sees a :class:`RelayStore` and a :class:`Hub`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from .hub import Hub, LocalHub
from .sqlite_store import SqliteRelayStore
from .store import RelayStore

Backend = tuple[RelayStore, Hub]


@contextlib.asynccontextmanager
async def _sqlite(path: str) -> AsyncIterator[Backend]:
    store = SqliteRelayStore(path)
    try:
        yield store, LocalHub()
    finally:
        store.close()


_SCHEMES: dict[str, Callable[[str], AbstractAsyncContextManager[Backend]]] = {
    "sqlite:": lambda location: _sqlite(location[len("sqlite:"):]),
}


def store_location(text: str) -> str:
    """``--store`` as given, if it names a backend (:class:`argparse.ArgumentTypeError` if not)."""
    for scheme in _SCHEMES:
        if text.startswith(scheme) and len(text) > len(scheme):
            return text
    raise argparse.ArgumentTypeError(f"expected sqlite:PATH, got {text!r}")


def open_backend(location: str) -> AbstractAsyncContextManager[Backend]:
    """Open the store and hub that ``location`` (see :func:`store_location`) names."""
    for scheme, opener in _SCHEMES.items():
        if location.startswith(scheme):
            return opener(location)
    raise ValueError(f"no relay store at {location!r}")

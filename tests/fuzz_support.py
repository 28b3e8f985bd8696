"""Helpers shared by the relay's and the social server's fuzz tests.

Strategies for nested values and request frames, reading every frame a server sends over an
in-memory stream (virtual time), running a server's worker-thread calls inline (so virtual time
does not jump while they run), and a log handler that collects the server's ERROR records.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from unittest import mock

import trio
from hypothesis import strategies as st

from e2e_proto.wire import FrameDecoder

EXAMPLES = int(os.environ.get("E2E_FUZZ_EXAMPLES", "60"))


def error_codes(api: ModuleType) -> set[str]:
    """The error codes an API module defines (its upper-case string constants)."""
    return {value for name, value in vars(api).items()
            if name.isupper() and isinstance(value, str)}


def nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``scalars`` and small lists and dictionaries of them, nested."""
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=12)


def request_dicts(types: Sequence[str], fields: Sequence[str],
             values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Requests of a known, random or unhashable (list, map) type and id, with up to five of
    ``fields`` set at random."""
    return st.builds(
        lambda kind, request_id, chosen: {"type": kind, "id": request_id, **chosen},
        st.sampled_from(types) | st.text(max_size=10)
        | st.lists(st.sampled_from(types), max_size=2)
        | st.dictionaries(st.sampled_from(types), st.none(), max_size=2),
        st.integers(0, 2**31) | st.none() | st.text(max_size=3),
        st.dictionaries(st.sampled_from(fields), values, max_size=5))


async def read_all(stream: trio.abc.Stream, decoder: FrameDecoder) -> list[dict[str, Any]]:
    """Every frame the server sends until it closes the stream or is silent for a second."""
    frames = []
    while True:
        with trio.move_on_after(1):  # virtual time: the server answers at once or not at all
            data = await stream.receive_some(65536)
            if not data:
                return frames
            decoder.feed(data)
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
            continue
        return frames


async def _inline(function: Callable[..., Any], *args: Any, **_: Any) -> Any:
    return function(*args)


def threads_inline() -> contextlib.AbstractContextManager[Any]:
    """``trio.to_thread.run_sync`` without a thread while the block runs: under a mock clock
    with autojump, virtual time must not jump while a server hashes a password (MIN limits) or
    reads and writes a small blob file, each well under a millisecond."""
    return mock.patch.object(trio.to_thread, "run_sync", _inline)


class ErrorLog(logging.Handler):
    """Collects a server's error log records: an internal error is a bug, not an answer."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def assert_none(self) -> None:
        """Fail with the messages of the records collected, if any."""
        assert not self.records, [r.getMessage() for r in self.records]


@contextmanager
def error_log(logger: str) -> Iterator[ErrorLog]:
    """An :class:`ErrorLog` on the logger named ``logger`` for the duration of the block."""
    errors = ErrorLog()
    logging.getLogger(logger).addHandler(errors)
    try:
        yield errors
    finally:
        logging.getLogger(logger).removeHandler(errors)

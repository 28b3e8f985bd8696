"""Requests as both servers answer them: a table of routes, refusals and error codes.

A server lists everything a peer may ask in two tables (before and after authentication) that
map a request ``type`` to a :class:`Route`: the handler and the fields it reads. A refused
request raises :class:`RequestError`, which becomes an error frame with the server's own code.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

Handler = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``handler(connection, frame) -> result fields``; refuses with :class:`RequestError`."""


class RequestError(Exception):
    """A request that is refused with an error frame; the connection stays open."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def retry_later(code: str, what: str, retry_after: float) -> RequestError:
    """A rate-limit refusal (``code``: the API's ``rate_limited``) that says when to retry: in
    the message and as ``retry_after``, whole seconds; with no ``retry_after`` when it never
    could be had (``retry_after`` infinite: more at once than the limit's burst)."""
    if not math.isfinite(retry_after):
        return RequestError(code, f"{what}: more at once than this server ever allows; "
                            "ask for fewer")
    seconds = math.ceil(retry_after)
    return RequestError(code, f"{what}; try again in {seconds} s", retry_after=seconds)


@dataclass(frozen=True, slots=True)
class ErrorCodes:
    """The codes a server's API uses for the refusals the shared plumbing makes."""

    bad_request: str
    unsupported: str
    frame_too_large: str
    not_authenticated: str
    rate_limited: str
    too_many_connections: str

    @classmethod
    def of(cls, api: ModuleType) -> ErrorCodes:
        """The codes of an API module that names them ``BAD_REQUEST``, ``UNSUPPORTED``, ..."""
        return cls(bad_request=api.BAD_REQUEST, unsupported=api.UNSUPPORTED,
                   frame_too_large=api.FRAME_TOO_LARGE,
                   not_authenticated=api.NOT_AUTHENTICATED, rate_limited=api.RATE_LIMITED,
                   too_many_connections=api.TOO_MANY_CONNECTIONS)


@dataclass(frozen=True, slots=True)
class Route:
    """One request type: its handler and the request fields it reads (besides ``id``, ``type``)."""

    handler: Handler
    fields: tuple[str, ...] = ()


RouteTable = Mapping[object, Route]
"""Request type -> :class:`Route`."""

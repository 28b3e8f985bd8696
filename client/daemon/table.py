"""What a method table entry is: a name, its parameter schema, its handlers, and its docs.

:class:`Method` is one entry; :func:`check_params` holds a call's parameters to the entry's
schema (unknown, missing and mistyped parameters are ``invalid params``, -32602) before any
handler runs, so a handler only sees values of the declared types. A method either belongs to
the daemon itself (``daemon``: subscribe, ack, ...) or to the transports (``on``: a handler per
transport, given that transport's :class:`~client.daemon.accounts.Account`); a transport-bound
method takes an optional ``transport`` parameter.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from e2e_proto.capabilities import PRIVATE, SOCIAL

from .jsonrpc import Codes, RpcError

if TYPE_CHECKING:
    from .accounts import Account
    from .connections import CallContext

MAX_STRING = 65_536
"""The longest string parameter, in characters (a line is capped in bytes as well)."""
MAX_LIST = 1_000
"""The most items of a list parameter."""


class Kind(NamedTuple):
    """A parameter type: its name in the docs and the test a value must pass."""

    name: str
    accepts: Callable[[Any], bool]


def _string(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_STRING


STRING = Kind(f"string of at most {MAX_STRING} characters", _string)
NAME = Kind("string of 1 to 256 characters", lambda v: isinstance(v, str) and 0 < len(v) <= 256)
INTEGER = Kind("integer", lambda v: type(v) is int and -2**63 <= v < 2**63)
BOOLEAN = Kind("boolean", lambda v: type(v) is bool)
STRINGS = Kind(f"array of 1 to {MAX_LIST} strings",
               lambda v: isinstance(v, list) and 0 < len(v) <= MAX_LIST
               and all(_string(x) for x in v))
EVENT_IDS = Kind(f"array of 1 to {MAX_LIST} event ids (positive integers)",
                 lambda v: isinstance(v, list) and 0 < len(v) <= MAX_LIST
                 and all(type(x) is int and 0 < x < 2**63 for x in v))
PATH = Kind("absolute path of at most 4096 characters",
            lambda v: isinstance(v, str) and 0 < len(v) <= 4096 and "\0" not in v
            and os.path.isabs(v))
TRANSPORT = Kind('"private" or "social"', lambda v: v in (PRIVATE, SOCIAL))
SECONDS = Kind("number of seconds, 0 or more",
               lambda v: (type(v) is int and 0 <= v < 2**63)
               or (type(v) is float and math.isfinite(v) and v >= 0))
CALL_ID = Kind("call id of 32 hex digits", lambda v: isinstance(v, str) and len(v) == 32
               and all(c in string.hexdigits for c in v))


class Param(NamedTuple):
    """One named parameter: its name (the CLI argument's), type, docs, and whether required."""

    name: str
    kind: Kind
    doc: str
    required: bool = True


TRANSPORT_PARAM = Param("transport", TRANSPORT, "which transport's account (default: the "
                        "home's only one, or private when it has both)", required=False)

TransportHandler = Callable[["Account", dict[str, Any]], Awaitable[Any]]
DaemonHandler = Callable[["CallContext", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """One entry of the method table.

    ``command`` is the ``e2e-chat`` command the method stands for (its refusal on a transport
    without a handler is that command's; with its action when the refusal names it: ``cross
    approve``); ``result`` documents what a call returns.
    """

    name: str
    doc: str
    result: str
    params: tuple[Param, ...] = ()
    on: Mapping[str, TransportHandler] = field(default_factory=dict)
    daemon: DaemonHandler | None = None
    command: str | None = None

    @property
    def schema(self) -> tuple[Param, ...]:
        """Every parameter the method takes (``transport`` for a transport-bound one)."""
        return self.params + ((TRANSPORT_PARAM,) if self.daemon is None else ())


def check_params(method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against the method's schema, absent optional ones as None.

    :class:`RpcError` (-32602) names the first parameter that is unknown, missing or of the
    wrong type.
    """
    schema = method.schema
    known = {param.name for param in schema}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RpcError(Codes.INVALID_PARAMS, f"invalid params: {method.name} takes no "
                       f"parameter {unknown[0][:64]!r}")
    checked: dict[str, Any] = {}
    for param in schema:
        value = params.get(param.name)
        if value is None:
            if param.required:
                raise RpcError(Codes.INVALID_PARAMS, f"invalid params: {method.name} needs "
                               f"{param.name!r} ({param.kind.name})")
        elif not param.kind.accepts(value):
            raise RpcError(Codes.INVALID_PARAMS, f"invalid params: {param.name!r} must be "
                           f"{_article(param.kind.name)}")
        checked[param.name] = value
    return checked


def _article(kind: str) -> str:
    if kind.startswith(("array", '"')):
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind

"""JSON-RPC 2.0 as the daemon speaks it, sans-IO: one JSON text per line in, typed calls out.

:func:`parse_line` turns one line (a request, a notification or a batch) into :class:`Call`
objects and the error answers that need no handler; :func:`response`, :func:`error_response`
and :func:`notification` make the lines that go back. Nothing here reads a socket. A
notification (a request without ``id``) is never answered, not even with an error; a batch is
answered with the list of its calls' answers (none at all when every call was a notification).
Parameters are by name only (``params`` is an object). Error codes are the specification's
(-32700 .. -32603), the daemon's own transport limits (-32000 .. -32003) and, for what a method
refuses, small positive codes (:class:`Codes`), each with a one-line message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VERSION = "2.0"


class Codes:
    """Every error code the daemon answers with (docs/JSONRPC.md lists them)."""

    PARSE_ERROR = -32700
    """The line is not JSON."""
    INVALID_REQUEST = -32600
    """The JSON is not a request (no ``method``, a wrong ``jsonrpc``, an empty batch, ...)."""
    METHOD_NOT_FOUND = -32601
    """No method of that name (or not over this connection)."""
    INVALID_PARAMS = -32602
    """A parameter is missing, unknown, of the wrong type or out of range."""
    INTERNAL_ERROR = -32603
    """A bug in the daemon; the daemon logs it and keeps serving."""
    LINE_TOO_LONG = -32000
    """The line exceeded the daemon's cap; the connection is closed."""
    RATE_LIMITED = -32001
    """The client sent more requests a second than its rate allows; the call was not run."""
    UNAUTHORIZED = -32002
    """The TCP or HTTP client has not presented the bearer token (``auth``)."""
    OVERLOADED = -32003
    """The daemon has too many clients (sent before closing) or a batch is too large."""
    USER_ERROR = 1
    """The command was refused for a reason meant for the user (unknown user, not
    registered, ...): the message is the line ``e2e-chat`` prints."""
    SERVER_REFUSED = 2
    """The relay or the social server refused; ``data.server_code`` is its code."""
    UNREACHABLE = 3
    """The server cannot be reached, closed the connection or did not answer in time."""
    UNSUPPORTED = 4
    """The feature does not exist on this transport (the capability table)."""
    NO_TRANSPORT = 5
    """The home has no account on the transport asked for."""
    NOT_SUBSCRIBED = 6
    """``unsubscribe`` of a subscription this connection does not hold."""


class RpcError(Exception):
    """A refusal answered as a JSON-RPC error: ``code``, a one-line message, optional data."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


RequestId = str | int | None


@dataclass(frozen=True, slots=True)
class Call:
    """One well-formed request of a line: its method, named parameters and id.

    ``notification`` is True when the request had no ``id``: it is run, never answered.
    """

    method: str
    params: dict[str, Any]
    id: RequestId
    notification: bool


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one line holds: the calls to run, the error answers already known, and whether the
    line was a batch (then the answers go back as one JSON array)."""

    calls: list[Call]
    errors: list[dict[str, Any]]
    batch: bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: bytes | str, max_batch: int = 100) -> Parsed:
    """Parse one line into calls and ready-made error answers; never raises.

    A line that is not JSON gets -32700; a value that is not a request (or a batch of them)
    gets -32600 with ``id`` null; a request whose ``params`` is not an object gets -32602. A
    batch of more than ``max_batch`` requests is refused whole (-32003).
    """
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).split(":")[0] if isinstance(exc, ValueError) else "nested too deeply"
        return Parsed([], [error_body(None, Codes.PARSE_ERROR, f"parse error: {reason}")],
                      False)
    if isinstance(value, list):
        if not value:
            return Parsed([], [error_body(None, Codes.INVALID_REQUEST,
                                          "invalid request: an empty batch")], False)
        if len(value) > max_batch:
            return Parsed([], [error_body(None, Codes.OVERLOADED, f"a batch holds at most "
                                          f"{max_batch} requests")], False)
        parsed = Parsed([], [], True)
        for item in value:
            _add(parsed, item)
        return parsed
    parsed = Parsed([], [], False)
    _add(parsed, value)
    return parsed


def _add(parsed: Parsed, value: Any) -> None:
    """Add one request of a line to ``parsed``: a call, or its error answer.

    An object that is not a valid request is answered even without ``id`` (it is not a valid
    notification either); a valid notification whose positional ``params`` cannot be run is
    dropped unanswered.
    """
    if not isinstance(value, dict):
        parsed.errors.append(error_body(None, Codes.INVALID_REQUEST,
                                        "invalid request: expected a JSON object"))
        return
    request_id = value.get("id")
    if not _valid_id(request_id):
        parsed.errors.append(error_body(None, Codes.INVALID_REQUEST, "invalid request: id "
                                        "must be a string, an integer or null"))
        return
    problem = _request_problem(value)
    if problem is not None:
        parsed.errors.append(error_body(request_id, Codes.INVALID_REQUEST,
                                        f"invalid request: {problem}"))
        return
    params = value.get("params", {})
    notification = "id" not in value
    if isinstance(params, list):
        if not notification:
            parsed.errors.append(error_body(request_id, Codes.INVALID_PARAMS, "invalid params: "
                                            "parameters are passed by name (an object)"))
        return
    parsed.calls.append(Call(value["method"], params, request_id, notification))


def _request_problem(value: dict[str, Any]) -> str | None:
    """Why ``value`` is not a request object, or None."""
    if value.get("jsonrpc") != VERSION:
        return '"jsonrpc" must be "2.0"'
    if not isinstance(value.get("method"), str) or not value["method"]:
        return '"method" must be a non-empty string'
    if not isinstance(value.get("params", {}), (dict, list)):
        return '"params" must be an object'
    extra = set(value) - {"jsonrpc", "method", "params", "id"}
    if extra:
        return f"unknown member {min(extra)!r}"
    return None


def _valid_id(value: object) -> bool:
    return value is None or isinstance(value, str) or (type(value) is int)


def result_body(request_id: RequestId, result: Any) -> dict[str, Any]:
    """The answer to a call that succeeded."""
    return {"jsonrpc": VERSION, "id": request_id, "result": result}


def error_body(request_id: RequestId, code: int, message: str,
               data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The answer to a call that failed (``message`` is one line)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": VERSION, "id": request_id, "error": error}


def notification_body(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A notification from the daemon (an event): a request without ``id``, never answered."""
    return {"jsonrpc": VERSION, "method": method, "params": params}


def encode(message: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """One message (or a batch's answers) as one line: compact UTF-8 JSON and ``\\n``."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class LineBuffer:
    """Splits a byte stream into lines of at most ``max_line`` bytes (the ``\\n`` excluded).

    :meth:`feed` then :meth:`next_line` until it gives None; :class:`LineTooLong` once the
    pending bytes exceed the cap without a newline (the stream cannot be resynchronised: close
    it). Memory stays within the cap plus one read.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._start = 0

    def feed(self, data: bytes) -> None:
        """Add bytes read from the stream."""
        if self._start:
            del self._buffer[:self._start]
            self._start = 0
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next complete line, without its ``\\n``; None when none is complete yet."""
        end = self._buffer.find(b"\n", self._start)
        if end < 0:
            if len(self._buffer) - self._start > self.max_line:
                raise LineTooLong(f"a line longer than {self.max_line} bytes")
            return None
        if end - self._start > self.max_line:
            raise LineTooLong(f"a line longer than {self.max_line} bytes")
        line = bytes(self._buffer[self._start:end])
        self._start = end + 1
        return line


class LineTooLong(Exception):
    """A client sent a line longer than the daemon's cap."""

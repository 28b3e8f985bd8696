"""Request fields as the social server reads them, refused with its ``bad_request`` code."""

from __future__ import annotations

from typing import Any

from e2e_proto import social_api as api
from e2e_proto.address import is_valid_account

from ..common.fields import require
from ..common.requests import RequestError


def require_field(frame: dict[str, Any], name: str, kind: type) -> Any:
    """``frame[name]``, which must be exactly of type ``kind``."""
    return require(frame, name, kind, code=api.BAD_REQUEST)


def name_field(frame: dict[str, Any], name: str) -> str:
    """``frame[name]``, which must be a valid account or group name."""
    value = frame.get(name)
    if not is_valid_account(value):
        raise RequestError(api.BAD_REQUEST, f"field {name!r} is not a valid name (1-64 "
                           "lowercase letters, digits, '_', '.', '-')")
    return value  # type: ignore[return-value]


def positive_field(frame: dict[str, Any], name: str, what: str) -> int:
    """``frame[name]`` as a positive 63-bit integer (what SQLite stores), else ``bad_request``."""
    value = frame.get(name)
    if type(value) is not int or not 0 < value < 2**63:
        raise RequestError(api.BAD_REQUEST, f"field {name!r} must be {what}")
    return value


def message_id_field(frame: dict[str, Any], name: str = "message") -> int:
    """``frame[name]`` as a message id."""
    return positive_field(frame, name, "a message id")


def password_field(frame: dict[str, Any]) -> bytes:
    """``frame["password"]`` as bytes (a string is UTF-8 encoded), bounded in length."""
    value = frame.get("password")
    if type(value) is str:
        value = value.encode()
    if type(value) is not bytes or len(value) > api.MAX_PASSWORD_BYTES:
        raise RequestError(api.BAD_REQUEST, "field 'password' must be a string of at most "
                           f"{api.MAX_PASSWORD_BYTES} bytes")
    return value

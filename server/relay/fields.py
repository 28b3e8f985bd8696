"""Request fields as the relay reads them, refused with its ``bad_request`` code."""

from __future__ import annotations

from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import is_valid_account

from ..common.fields import require
from ..common.requests import RequestError


def require_field(frame: dict[str, Any], name: str, kind: type) -> Any:
    """``frame[name]``, which must be exactly of type ``kind``."""
    return require(frame, name, kind, code=api.BAD_REQUEST)


def account_field(frame: dict[str, Any], name: str = "account") -> str:
    """``frame[name]``, which must be a valid account name."""
    value = frame.get(name)
    if not is_valid_account(value):
        raise RequestError(api.BAD_REQUEST, f"field {name!r} is not a valid account name")
    return value  # type: ignore[return-value]

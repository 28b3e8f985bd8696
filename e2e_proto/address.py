"""Addresses: an account name and a device id, the unit a session and an envelope belong to."""

from __future__ import annotations

import re
from typing import NamedTuple

from .constants import MAX_ACCOUNT_LENGTH, MAX_DEVICE_ID
from .errors import LocalProtocolError, describe

ACCOUNT_PATTERN = re.compile(rf"[a-z0-9][a-z0-9_.-]{{0,{MAX_ACCOUNT_LENGTH - 1}}}")
"""Account names: lowercase ASCII letters, digits, ``_ . -``; 1 to 64 characters."""


def is_valid_account(name: object) -> bool:
    """Whether ``name`` is an acceptable account name."""
    return type(name) is str and ACCOUNT_PATTERN.fullmatch(name) is not None


def is_valid_device_id(device_id: object) -> bool:
    """Whether ``device_id`` is an unsigned 32-bit integer."""
    return type(device_id) is int and 0 <= device_id <= MAX_DEVICE_ID


class Address(NamedTuple):
    """One device of one account."""

    account: str
    device_id: int

    @classmethod
    def checked(cls, account: object, device_id: object) -> Address:
        """An address, after validating both parts (:class:`LocalProtocolError` otherwise)."""
        if not is_valid_account(account):
            raise LocalProtocolError(f"invalid account name {describe(account)}")
        if not is_valid_device_id(device_id):
            raise LocalProtocolError(f"invalid device id {describe(device_id)}")
        return cls(account, device_id)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.account}.{self.device_id}"

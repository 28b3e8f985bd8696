"""Addresses: an account name and a device id, the unit a session and an envelope belong to.

An account of the *other* transport is named with its transport after an ``@``
(``bob@social`` on the private side, ``alice@private`` on the social side; DESIGN §16): such a
**foreign** name is never a local account (``@`` is not allowed in one), so a session or a
contact of the other transport can never be confused with a local one.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .capabilities import PRIVATE, SOCIAL
from .constants import MAX_ACCOUNT_LENGTH, MAX_DEVICE_ID
from .errors import LocalProtocolError, describe

ACCOUNT_PATTERN = re.compile(rf"[a-z0-9][a-z0-9_.-]{{0,{MAX_ACCOUNT_LENGTH - 1}}}")
"""Account names: lowercase ASCII letters, digits, ``_ . -``; 1 to 64 characters."""


def is_valid_account(name: object) -> bool:
    """Whether ``name`` is an acceptable account name."""
    return type(name) is str and ACCOUNT_PATTERN.fullmatch(name) is not None


FOREIGN_SEPARATOR = "@"
TRANSPORTS = (PRIVATE, SOCIAL)


def qualify(account: str, transport: str) -> str:
    """``account`` of ``transport`` as the other transport names it: ``account@transport``."""
    if not is_valid_account(account) or transport not in TRANSPORTS:
        raise LocalProtocolError(f"cannot qualify {describe(account)} with {describe(transport)}")
    return f"{account}{FOREIGN_SEPARATOR}{transport}"


def split_foreign(name: object) -> tuple[str, str] | None:
    """``(account, transport)`` of a foreign name ``account@transport``; None for anything
    else (a local name included)."""
    if type(name) is not str:
        return None
    account, separator, transport = name.rpartition(FOREIGN_SEPARATOR)
    if not separator or transport not in TRANSPORTS or not is_valid_account(account):
        return None
    return account, transport


def is_foreign(name: object) -> bool:
    """Whether ``name`` names an account of the other transport (``account@transport``)."""
    return split_foreign(name) is not None


def is_valid_envelope_account(name: object) -> bool:
    """Whether ``name`` may stand in an envelope's address: a local or a foreign name."""
    return is_valid_account(name) or is_foreign(name)


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

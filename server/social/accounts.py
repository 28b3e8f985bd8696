"""Social accounts and devices: ``register``, ``login`` (a new device and session token) and
``auth`` (resume a session with its token)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api

from ..common.requests import RequestError, retry_later
from .fields import name_field, password_field
from .store import NameTakenError

if TYPE_CHECKING:
    from .connection import SocialConnection
log = logging.getLogger("e2e.social")


def token_hash(token: bytes) -> bytes:
    """What the server keeps of a session token: its SHA-256."""
    return hashlib.sha256(token).digest()


def new_device(conn: SocialConnection, account: str) -> dict[str, Any]:
    """A new device of ``account`` with a fresh session token; the connection becomes it."""
    token = secrets.token_bytes(api.TOKEN_SIZE)
    expires = conn.server.clock() + conn.server.config.token_ttl
    device_id = conn.store.add_device(account, token_hash(token), expires)
    conn.become(account, device_id, expires)
    return {"account": account, "device_id": device_id, "token": token,
            "expires": expires}


async def register(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Create an account with a password; the connection becomes its first device."""
    account = name_field(frame, "account")
    password = password_field(frame)
    if len(password.decode(errors="replace")) < api.MIN_PASSWORD_LENGTH:
        raise RequestError(api.WEAK_PASSWORD, "a password needs at least "
                           f"{api.MIN_PASSWORD_LENGTH} characters")
    if conn.store.account_exists(account) or conn.store.group(account) is not None:
        raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken")
    registrations = conn.server.registrations
    if not registrations.take(conn.source):  # before the costly hashing
        raise retry_later(api.RATE_LIMITED, "too many accounts registered from this address",
                          registrations.retry_after(conn.source))
    hashed = await conn.server.hash_password(password)
    try:
        conn.store.create_account(account, hashed, conn.server.clock())
    except NameTakenError:
        registrations.give_back(conn.source)  # nothing was registered
        raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken") from None
    log.info("registered account %s", account)
    return new_device(conn, account)


async def login(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Log in with a password as a new device of the account."""
    account = name_field(frame, "account")
    password = password_field(frame)
    if not await conn.server.check_password(conn.store.password_hash(account), password):
        raise RequestError(api.AUTH_FAILED, "wrong account name or password")
    return new_device(conn, account)


async def auth(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Resume a device's session with its token."""
    token = frame.get("token")
    if type(token) is not bytes or len(token) != api.TOKEN_SIZE:
        raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
    device = conn.store.device_by_token(token_hash(token))
    if device is None:
        raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
    if conn.server.clock() >= device.expires:
        raise RequestError(api.TOKEN_EXPIRED, "the session token expired; log in again")
    conn.become(device.account, device.device_id, device.expires)
    return {"account": device.account, "device_id": device.device_id,
            "expires": device.expires}

"""Social accounts and devices: ``register``, ``login`` (a new device and session token, with
back-off for failed passwords), ``auth`` (resume a session with its token), ``logout``,
``devices`` and ``revoke_device``."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api
from e2e_proto.address import is_valid_device_id
from shared.tokens import token_hash

from ..common.requests import RequestError, retry_later
from ..common.store_base import StoreUnavailableError
from .fields import name_field, password_field
from .store import NameTakenError

if TYPE_CHECKING:
    from .connection import SocialConnection
log = logging.getLogger("e2e.social")


def new_device(conn: SocialConnection, account: str) -> dict[str, Any]:
    """A new device of ``account`` with a fresh session token; the connection becomes it."""
    token = secrets.token_bytes(api.TOKEN_SIZE)
    now = conn.server.clock()
    expires = now + conn.server.config.token_ttl
    device_id = conn.store.add_device(account, token_hash(token), expires, now)
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
    """Log in with a password as a new device of the account (guesses are rate-limited)."""
    account = name_field(frame, "account")
    password = password_field(frame)
    failures = conn.server.login_failures
    refusal = failures.attempt(account, conn.source)  # counted as failed until it is right
    if refusal is not None:
        what, wait = refusal
        log.info("login to %s from %s refused: too many failed logins %s", account,
                 conn.source, what)
        raise retry_later(api.RATE_LIMITED, f"too many failed logins {what}", wait)
    if not await conn.server.check_password(conn.store.password_hash(account), password):
        raise RequestError(api.AUTH_FAILED, "wrong account name or password")
    failures.succeeded(account, conn.source)
    return new_device(conn, account)


async def auth(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Resume a device's session with its token."""
    token = frame.get("token")
    if type(token) is not bytes or len(token) != api.TOKEN_SIZE:
        raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
    device = conn.store.device_by_token(token_hash(token))
    if device is None:
        raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
    now = conn.server.clock()
    if now >= device.expires:
        raise RequestError(api.TOKEN_EXPIRED, "the session token expired; log in again")
    conn.become(device.account, device.device_id, device.expires)
    try:
        conn.store.touch_device(device.account, device.device_id, now)
    except StoreUnavailableError:  # a read-only or full disk: serve anyway
        log.warning("could not record the last login of %s.%d", device.account,
                    device.device_id)
    return {"account": device.account, "device_id": device.device_id,
            "expires": device.expires}


async def logout(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Revoke this device (its token, keys and undelivered envelopes); the connection, and
    every other connection of this device, ends once this is answered."""
    assert conn.address is not None
    _revoke(conn, conn.address.device_id, "logged out")
    return {}


async def devices(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The devices of the caller's account, the calling one marked ``current``."""
    assert conn.address is not None
    account, me = conn.address
    return {"devices": [
        {"device_id": device.device_id, "created": device.created,
         "last_seen": device.last_seen, "expires": device.expires,
         "current": device.device_id == me}
        for device in conn.store.device_info(account)]}


async def revoke_device(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Revoke another device of the caller's account (the calling one: as ``logout``)."""
    device_id = frame.get("device_id")
    if not is_valid_device_id(device_id):
        raise RequestError(api.BAD_REQUEST, "field 'device_id' must be a u32")
    assert conn.address is not None
    if not _revoke(conn, device_id, f"revoked by device {conn.address.device_id}"):  # type: ignore[arg-type]
        raise RequestError(api.UNKNOWN_DEVICE, f"{conn.address.account} has no device "
                           f"{device_id}")
    return {"device_id": device_id}


def _revoke(conn: SocialConnection, device_id: int, how: str) -> bool:
    """Remove a device of the caller's account and end its connections; False if none."""
    assert conn.address is not None
    account = conn.address.account
    if not conn.store.remove_device(account, device_id):
        return False
    log.info("device %s.%d %s", account, device_id, how)
    conn.server.end_device(account, device_id, f"this device was {how}; log in again",
                           keep=conn)
    if device_id == conn.address.device_id:
        conn.end_after_answer()
    return True


"""Relay requests that make a connection a device: ``register`` (a new account) and ``auth``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.devices import SignedDeviceList
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey

from ..common.requests import RequestError, retry_later
from .fields import account_field, require_field
from .store import NameTakenError

if TYPE_CHECKING:
    from .connection import RelayConnection

log = logging.getLogger("e2e.relay")


async def register(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Create an account from its first signed device list; the connection becomes device 0."""
    account = account_field(frame)
    try:
        account_key = Ed25519PublicKey(require_field(frame, "account_key", bytes))
        signed = SignedDeviceList.verify(account_key, require_field(frame, "device_list", bytes),
                                         require_field(frame, "device_list_signature", bytes))
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, f"device list refused: {exc}") from None
    device_list = signed.device_list
    if device_list.account != account or device_list.device_ids != [0]:
        raise RequestError(api.BAD_REQUEST,
                           "a new account's device list must name it and hold device 0 only")
    if device_list.version != api.FIRST_DEVICE_LIST_VERSION:
        raise RequestError(api.BAD_REQUEST, "a new account's device list has version "
                           f"{api.FIRST_DEVICE_LIST_VERSION}")
    device_key = device_list.identity_of(0)
    assert device_key is not None
    conn.check_auth_signature(device_key, account, 0, frame.get("signature"))
    limits = conn.relay.limits
    wait = await limits.take_registration(conn.source)
    if wait:
        raise retry_later(api.RATE_LIMITED, "too many accounts registered from this address",
                          wait)
    try:
        await conn.relay.store.create_account(account, account_key.raw, device_list.version,
                                              signed.body, signed.signature,
                                              {0: device_key.raw}, conn.relay.clock())
    except NameTakenError:
        await limits.give_back_registration(conn.source)  # nothing was registered
        raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken") from None
    log.info("registered account %s", account)
    await conn.become(Address(account, 0))
    return {"account": account, "device_id": 0}


async def auth(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Authenticate as an existing device by signing the connection's challenge."""
    account = account_field(frame)
    device_id = frame.get("device_id")
    if not is_valid_device_id(device_id):
        raise RequestError(api.BAD_REQUEST, "field 'device_id' must be a u32")
    record = await conn.relay.store.account(account)
    if record is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    device_key = record.devices.get(device_id)  # type: ignore[arg-type]
    if device_key is None:
        raise RequestError(api.AUTH_FAILED, f"{account} has no device {device_id}")
    conn.check_auth_signature(Ed25519PublicKey(device_key), account,
                               device_id, frame.get("signature"))  # type: ignore[arg-type]
    await conn.become(Address(account, device_id))  # type: ignore[arg-type]
    return {"account": account, "device_id": device_id}

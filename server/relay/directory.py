"""Relay requests on the prekey directory and device lists: publish, look up, take bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.keys import Ed25519PublicKey

from ..common.fields import published_prekeys
from ..common.requests import RequestError, retry_later
from .fields import account_field

if TYPE_CHECKING:
    from .connection import RelayConnection


async def publish_prekeys(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store the device's signed prekey and more one-time prekeys (bounded)."""
    assert conn.address is not None
    account, device_id = conn.address
    record = conn.relay.store.account(account)
    assert record is not None
    identity = Ed25519PublicKey(record.devices[device_id])
    spk, opks = published_prekeys(frame, identity, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST,
                                  code=api.BAD_REQUEST)
    held = conn.relay.store.one_time_prekey_count(account, device_id)
    if held + len(opks) > conn.relay.config.max_one_time_prekeys:
        raise RequestError(api.BAD_REQUEST, f"a device may hold at most "
                           f"{conn.relay.config.max_one_time_prekeys} one-time prekeys "
                           f"(it holds {held})")
    count = conn.relay.store.store_prekeys(account, device_id, spk, opks)
    return {"one_time_prekeys": count}


async def get_devices(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """An account's key and signed device list (and device details to its own devices)."""
    account = account_field(frame)
    record = conn.relay.store.account(account)
    if record is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    result = {"account": account, "account_key": record.account_key,
              "device_list": record.list_body, "device_list_signature": record.list_signature}
    if conn.address is not None and conn.address.account == account:
        result["device_info"] = [list(i) for i in conn.relay.store.device_info(account)]
    return result


async def fetch_bundles(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Hand out prekey bundles of an account's devices, each one-time prekey once."""
    account = account_field(frame)
    record = conn.relay.store.account(account)
    if record is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    wanted = frame.get("device_ids")
    if wanted is None:
        wanted = list(record.devices)
    if (type(wanted) is not list or not all(is_valid_device_id(i) for i in wanted)
            or len(set(wanted)) != len(wanted)
            or not all(i in record.devices for i in wanted)):
        raise RequestError(api.BAD_REQUEST,
                           "device_ids must list distinct devices of the account")
    assert conn.address is not None
    relay, requester = conn.relay, conn.address.account
    targets = [(requester, Address(account, device_id)) for device_id in wanted]
    for target in targets:
        wait = relay.target_fetches.retry_after(target)
        if wait:
            raise retry_later(api.RATE_LIMITED, f"too many bundles of {target[1]} fetched by "
                              "this account", wait)
    if not relay.bundle_fetches.take(requester, len(wanted)):
        raise retry_later(api.RATE_LIMITED, "too many prekey bundles fetched by this account",
                          relay.bundle_fetches.retry_after(requester, len(wanted)))
    bundles = []
    for target in targets:
        relay.target_fetches.take(target)
    for device_id in wanted:
        # Past the device's one-time prekey budget the bundle carries none (X3DH without DH4):
        # a drainer gets no more, and no one is refused a session.
        one_time = relay.one_time_prekeys.take(Address(account, device_id))
        taken = relay.store.take_bundle(account, device_id, one_time)
        if taken is None:
            raise RequestError(api.NO_PREKEYS, f"{account}.{device_id} has published no "
                               "signed prekey")
        bundle, left = taken
        bundles.append(list(bundle))
        if left < conn.relay.config.prekeys_low_watermark:
            conn.relay.notify(Address(account, device_id),
                              {"type": "prekeys_low", "count": left})
    return {"account": account, "bundles": bundles}

"""Relay requests on the prekey directory and device lists: publish, look up, take bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.constants import PRIMARY_DEVICE_ID
from e2e_proto.devices import link_message
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey

from ..common.fields import published_prekeys
from ..common.requests import RequestError
from .fields import account_field
from .store import PrekeyLimitError

if TYPE_CHECKING:
    from .connection import RelayConnection


async def publish_prekeys(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store the device's signed prekey and more one-time prekeys (bounded), and a linked
    device's link signature when it sends one."""
    assert conn.address is not None
    account, device_id = conn.address
    record = await conn.relay.store.account(account)
    assert record is not None
    identity = Ed25519PublicKey(record.devices[device_id])
    spk, opks = published_prekeys(frame, identity, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST,
                                  code=api.BAD_REQUEST)
    link_signature = _link_signature(frame, record.account_key, account, device_id, identity)
    try:  # the cap is counted in the store's write: several connections never pass it together
        count = await conn.relay.store.store_prekeys(
            account, device_id, spk, opks, limit=conn.relay.config.max_one_time_prekeys)
    except PrekeyLimitError as exc:
        raise RequestError(api.BAD_REQUEST, str(exc)) from None
    if link_signature is not None:
        await conn.relay.store.set_link_signature(account, device_id, link_signature)
    return {"one_time_prekeys": count}


def _link_signature(frame: dict[str, Any], account_key: bytes, account: str, device_id: int,
                    identity: Ed25519PublicKey) -> bytes | None:
    """A linked device's ``link_signature``, checked; None when absent or from the primary."""
    signature = frame.get("link_signature")
    if signature is None or device_id == PRIMARY_DEVICE_ID:
        return None
    try:
        identity.verify(link_message(Ed25519PublicKey(account_key), account), signature)
    except E2EProtoError:
        raise RequestError(api.BAD_REQUEST, "the link signature does not verify") from None
    return signature  # type: ignore[no-any-return]


async def get_devices(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """An account's key, signed device list and its linked devices' link signatures (and
    device details to its own devices)."""
    account = account_field(frame)
    record = await conn.relay.store.account(account)
    if record is None:
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    signatures = await conn.relay.store.link_signatures(account)
    result = {"account": account, "account_key": record.account_key,
              "device_list": record.list_body, "device_list_signature": record.list_signature,
              "link_signatures": [[device_id, signature] for device_id, signature
                                  in sorted(signatures.items())]}
    if conn.address is not None and conn.address.account == account:
        result["device_info"] = [list(i) for i in await conn.relay.store.device_info(account)]
    return result


async def fetch_bundles(conn: RelayConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Hand out prekey bundles of an account's devices, each one-time prekey once."""
    account = account_field(frame)
    record = await conn.relay.store.account(account)
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
    one_time = await conn.relay.limits.admit_bundles(
        conn.address.account, [Address(account, i) for i in wanted], api.RATE_LIMITED)
    bundles = []
    for device_id in wanted:
        taken = await conn.relay.store.take_bundle(account, device_id,
                                                   Address(account, device_id) in one_time)
        if taken is None:
            raise RequestError(api.NO_PREKEYS, f"{account}.{device_id} has published no "
                               "signed prekey")
        bundle, left = taken
        bundles.append(list(bundle))
        if left < conn.relay.config.prekeys_low_watermark:
            await conn.relay.notify(Address(account, device_id),
                                    {"type": "prekeys_low", "count": left})
    return {"account": account, "bundles": bundles}

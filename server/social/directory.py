"""The key directory for secret conversations: publish prekeys, list devices, take bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto import social_api as api
from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey

from ..common.fields import published_prekeys
from ..common.requests import RequestError
from .fields import name_field, require_field
from .store import KeyChangedError, NoPrekeysError

if TYPE_CHECKING:
    from .connection import SocialConnection


async def publish_prekeys(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Store this device's identity key, signed prekey and one-time prekeys."""
    assert conn.address is not None
    try:
        identity = Ed25519PublicKey(require_field(frame, "identity_key", bytes))
    except E2EProtoError:
        raise RequestError(api.BAD_REQUEST, "identity_key must be 32 bytes") from None
    spk, opks = published_prekeys(frame, identity, conn.server.config.max_one_time_prekeys,
                                  code=api.BAD_REQUEST)
    try:
        count = conn.store.publish_prekeys(*conn.address, identity.raw, spk, opks)
    except KeyChangedError:
        raise RequestError(api.KEY_CHANGED, "this device published another identity key "
                           "before; log in as a new device") from None
    return {"one_time_prekeys": count}


async def get_devices(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """An account's devices and their identity keys (for secret conversations)."""
    account = name_field(frame, "account")
    if not conn.store.account_exists(account):
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    return {"account": account,
            "devices": [[d.device_id, d.identity_key] for d in conn.store.devices(account)]}


async def fetch_bundles(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Hand out prekey bundles of an account's keyed devices, each one-time prekey once."""
    assert conn.address is not None
    account = name_field(frame, "account")
    if not conn.store.account_exists(account):
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    keyed = {d.device_id for d in conn.store.devices(account) if d.identity_key is not None}
    wanted = frame.get("device_ids")
    if wanted is None:
        wanted = sorted(keyed)
    if (type(wanted) is not list or not all(is_valid_device_id(i) for i in wanted)
            or len(set(wanted)) != len(wanted) or not all(i in keyed for i in wanted)):
        raise RequestError(api.BAD_REQUEST, "device_ids must list distinct devices of the "
                           "account that published keys")
    one_time = conn.server.bundle_limits.admit(
        conn.address.account, [Address(account, i) for i in wanted], api.RATE_LIMITED)
    try:
        bundles = conn.store.take_bundles(account, wanted, {a.device_id for a in one_time})
    except NoPrekeysError as exc:
        raise RequestError(api.NO_PREKEYS, f"{account}.{exc.device_id} has published no "
                           "signed prekey") from None
    return {"account": account, "bundles": [list(b) for b in bundles]}

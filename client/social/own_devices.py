"""This account's own devices on the social server: list them, revoke one, log this one out.

A session token is valid until it expires or is revoked: ``logout`` revokes this device's (the
home keeps its account name, so ``login`` brings it back as a new device), ``revoke_device``
revokes another's, for example a lost phone's or one the user does not recognise.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2e_proto.address import is_valid_device_id

from ..core.errors import ClientError
from ..core.pushes import bounded_int
from .base import SessionBase

MAX_OWN_DEVICES = 16_384
"""The most devices a ``devices`` answer may list (the server's own list bound)."""


@dataclass(frozen=True, slots=True)
class OwnDevice:
    """One device of this account, as the server lists it (times in seconds since the epoch)."""

    device_id: int
    key: bytes | None  # its published identity key; None before it published one
    created: float | None
    last_seen: float | None
    expires: float | None
    current: bool  # the device this home is


class OwnDevices(SessionBase):
    """Listing, revoking and logging out this account's devices."""

    async def own_devices(self) -> list[OwnDevice]:
        """Every device of this account with its key, login and last-seen times."""
        response = await self.request("devices")
        rows = response.get("devices")
        if type(rows) is not list or len(rows) > MAX_OWN_DEVICES:
            raise ClientError("the social server sent a malformed device list")
        keys = await self.listed_devices(self.state.account or "")
        devices = []
        for row in rows:
            if type(row) is not dict or not is_valid_device_id(row.get("device_id")):
                raise ClientError("the social server sent a malformed device list")
            device_id = row["device_id"]
            devices.append(OwnDevice(device_id, keys.get(device_id), _time(row.get("created")),
                                     _time(row.get("last_seen")), _time(row.get("expires")),
                                     row.get("current") is True))
        return devices

    async def revoke_device(self, device_id: int) -> int:
        """Revoke another device of this account (its token, keys and undelivered messages);
        revoking this device is :meth:`logout`."""
        if not is_valid_device_id(device_id):
            raise ClientError(f"{device_id!r} is not a device id")
        if self.address is not None and device_id == self.address.device_id:
            await self.logout()
            return device_id
        response = await self.request("revoke_device", device_id=device_id)
        revoked = bounded_int(response.get("device_id"), 0, 2**32 - 1)
        if revoked != device_id:
            raise ClientError("the social server's answer names another device")
        return device_id

    async def logout(self) -> None:
        """Revoke this device's session token at the server, then forget it here."""
        await self.request("logout")
        with self.state.protocol.transaction():
            self.state.set("token", None)


def _time(value: object) -> float | None:
    """A time the server sent: float or int seconds, or None."""
    if type(value) in (int, float) and 0 <= value < 2**53:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    return None



"""The device sets of secret conversations: pinned on first use, changes accepted by the user.

The social server runs the key directory and can add a device to any account (a login it makes
itself). So this device pins, per account, the set of device keys it first sees when a secret
conversation is used (sending, or receiving a secret message); from then on a device the server
lists that is not in the pinned set, or a listed device whose key differs, is a change: nothing
is encrypted to the account until the user accepts the account's current devices
(:meth:`DevicePins.accept_devices`, ``e2e-chat --transport social verify NAME --accept``), and
messages from a device not accepted are held until then.
"""

from __future__ import annotations

from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.constants import KEY_SIZE

from ..core.errors import ClientError
from .base import SessionBase

ACCEPTED, NEW, CHANGED = "accepted", "new", "changed"


class DevicePins(SessionBase):
    """Pinning each account's device keys and reporting, refusing and accepting changes."""

    async def listed_devices(self, account: str) -> dict[int, bytes]:
        """The devices of ``account`` with a published key, as the server lists them now."""
        response = await self.request("get_devices", account=account)
        entries = response.get("devices")
        try:
            listed = {device: key for device, key in entries}  # type: ignore[union-attr]
        except (TypeError, ValueError):
            listed = None
        if listed is None or not all(
                is_valid_device_id(d) and (k is None or (type(k) is bytes and len(k) == KEY_SIZE))
                for d, k in listed.items()):
            raise ClientError(f"the social server sent a malformed device list for {account!r}")
        return {device: key for device, key in listed.items() if key is not None}

    async def device_report(self, account: str) -> list[tuple[int, bytes, str]]:
        """``(device_id, key, status)`` of each device the server lists for ``account``:
        ``accepted``, ``new`` (not in the pinned set) or ``changed`` (another key)."""
        pinned = self.state.pinned_devices(account)
        return [(device, key, _status(pinned, device, key))
                for device, key in sorted((await self.listed_devices(account)).items())]

    async def checked_devices(self, account: str) -> dict[int, bytes]:
        """``account``'s listed devices, pinned on first use; :class:`ClientError` for any
        device not accepted (nothing may be encrypted to the account until the user accepts)."""
        listed = await self.listed_devices(account)
        pinned = self.state.pinned_devices(account)
        if not pinned:
            with self.state.protocol.transaction():
                self.state.pin_devices(account, listed)
            return listed
        changes = [f"device {device} ({_status(pinned, device, key)}, key {key[:8].hex()})"
                   for device, key in sorted(listed.items())
                   if _status(pinned, device, key) != ACCEPTED]
        if changes:
            raise ClientError(
                f"the devices of {account!r} changed: {', '.join(changes)}. The server can add "
                f"devices itself: check them with the owner, then accept with 'e2e-chat "
                f"--transport social verify {account} --accept'")
        return listed

    async def pin_on_first_use(self, *accounts: str) -> None:
        """Pin the listed devices of each of ``accounts`` that has no pinned set yet."""
        for account in accounts:
            if not self.state.pinned_devices(account):
                await self.checked_devices(account)

    def accepted_key(self, address: Address) -> bytes | None:
        """The accepted key of a device, None when the device is not accepted."""
        return self.state.pinned_devices(address.account).get(address.device_id)

    async def accept_devices(self, account: str) -> tuple[int, int]:
        """Accept the devices the server lists for ``account`` now; returns how many there are
        and how many held messages the next receive shows.

        Sessions with a device whose key changed are dropped (a new one is made next time).
        """
        listed = await self.listed_devices(account)
        pinned = self.state.pinned_devices(account)
        with self.state.protocol.transaction():
            for device, key in listed.items():
                if _status(pinned, device, key) == CHANGED:
                    self.state.protocol.delete_session(Address(account, device))
            self.state.pin_devices(account, listed)
            released = self.state.release_held(account)
        return len(listed), released


def _status(pinned: dict[int, bytes], device: int, key: bytes) -> str:
    known = pinned.get(device)
    return ACCEPTED if known == key else NEW if known is None else CHANGED

"""A social account's identity for cross-transport chats (DESIGN §16; PROTOCOL.md §19.5).

A social account has no account identity key of its own: its devices log in with a password
and the social server lists their keys (which it could forge). To talk end to end with the
private transport, where every account is an account identity key (AIK) and a device list it
signs, a social account that opts in makes the same pair: a **cross identity key** (Ed25519,
kept on the device that made it) and a **cross device list** it signs, naming the devices
(social device ids and their device identity keys) that take part in cross-transport chats.

The list has the private side's shape (:class:`~e2e_proto.devices.DeviceList`) with its own
domain-separation prefixes and two differences: the devices are the account's social device
ids (no device 0 needs to be among them), and *every* listed device, the one holding the
identity key included, signs :meth:`CrossDeviceList.link_message` with its device key. At most
:data:`~e2e_proto.constants.MAX_DEVICES` (five) devices: what a private client addresses for one
account. A private client trusts such a list exactly as it trusts a private account's list:
signed by the identity key, every device's link signature valid, never an older version under
the same key, a changed identity key held until the user checks the safety number.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import CROSS_DEVICE_LINK_PREFIX, CROSS_DEVICE_LIST_PREFIX
from .devices import DeviceList, SignedDeviceList, link_message
from .keys import Ed25519PublicKey, IdentityKeyPair


@dataclass(frozen=True, slots=True)
class CrossDeviceList(DeviceList):
    """A social account's cross-transport devices at one version (``account`` unqualified)."""

    prefix = CROSS_DEVICE_LIST_PREFIX
    link_prefix = CROSS_DEVICE_LINK_PREFIX
    requires_primary = False

    def sign(self, account_identity: IdentityKeyPair) -> SignedCrossDeviceList:
        """Sign with the cross identity key."""
        return SignedCrossDeviceList(self, self.body(),
                                     account_identity.sign(self.signed_bytes()))


@dataclass(frozen=True, slots=True)
class SignedCrossDeviceList(SignedDeviceList):
    """A cross device list with its msgpack body and the cross identity key's signature."""

    list_type = CrossDeviceList


def cross_link_message(identity_key: Ed25519PublicKey, account: str) -> bytes:
    """What a device signs to join ``account``'s cross identity ``identity_key``:
    ``b"e2e-proto/cross-device-link/v1" || identity_key || account``."""
    return link_message(identity_key, account, CROSS_DEVICE_LINK_PREFIX)

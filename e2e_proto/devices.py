"""Signed device lists: which devices (and device identity keys) belong to an account (DESIGN §6).

The account identity key (AIK) signs ``DEVICE_LIST_PREFIX || msgpack([account, version,
[[device_id, dik_pub], ...]])``. Device 0 is the primary; an account has at most
:data:`~e2e_proto.constants.MAX_LINKED_DEVICES` linked devices besides it; every change raises
the version, and an older version than one already seen is refused. Each linked device signs
:func:`link_message` (the account's key and name) with its own key; a list is trusted only with
a valid link signature for each of its linked devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import msgpack

from .address import is_valid_account, is_valid_device_id
from .constants import (
    DEVICE_LINK_PREFIX,
    DEVICE_LIST_PREFIX,
    KEY_SIZE,
    MAX_ACCOUNT_LENGTH,
    MAX_DEVICES,
    PRIMARY_DEVICE_ID,
)
from .errors import (
    InvalidKeyError,
    LocalProtocolError,
    MalformedError,
    RemoteProtocolError,
    describe,
)
from .keys import Ed25519PublicKey, IdentityKeyPair
from .unpack import UnpackLimits

_U64_LIMIT = 2**64


DEVICE_LIST_LIMITS = UnpackLimits(
    max_str_len=MAX_ACCOUNT_LENGTH, max_bin_len=KEY_SIZE,  # the account; the device keys
    # [account, version, [[id, key], ...]]: up to 64 entries parse, so that more than
    # MAX_DEVICES is the typed TooManyDevicesError (too_many_devices at the relay).
    max_array_len=64, max_map_len=0, max_containers=2 + 64)
"""A device list body (signed by the account key before it is unpacked)."""

class TooManyDevicesError(LocalProtocolError):
    """A device list would hold more than the primary and four linked devices."""


class StaleDeviceListError(RemoteProtocolError):
    """A device list is older than (or as old as, but different from) one already seen."""


def _check(account: str, version: int, devices: tuple[tuple[int, Ed25519PublicKey], ...],
           error: type[Exception], requires_primary: bool = True) -> None:
    if not is_valid_account(account):
        raise error(f"invalid account name {describe(account)}")
    if type(version) is not int or not 0 <= version < _U64_LIMIT:
        raise error("device list version must be an unsigned 64-bit integer")
    ids = [device_id for device_id, _ in devices]
    if not all(is_valid_device_id(i) for i in ids) or ids != sorted(set(ids)):
        raise error("device ids must be distinct u32 values in ascending order")
    if len({key for _, key in devices}) != len(devices):
        raise error("two devices of a list cannot share an identity key")
    if not ids or (requires_primary and ids[0] != PRIMARY_DEVICE_ID):
        raise error("a device list must contain the primary device 0" if requires_primary
                    else "a device list must name at least one device")
    if len(ids) > MAX_DEVICES:
        raise TooManyDevicesError(
            f"an account has at most {MAX_DEVICES - 1} linked devices besides the primary")


@dataclass(frozen=True, slots=True)
class DeviceList:
    """An account's devices at one version: ``(device_id, device identity key)`` pairs.

    The class attributes say which kind of list it is (a subclass changes them: the social
    side's cross-transport list, :mod:`e2e_proto.cross_identity`): the prefix its signature
    covers, the prefix of its devices' link signatures, and whether device 0 is its primary
    (which then signs no link message).
    """

    account: str
    version: int
    devices: tuple[tuple[int, Ed25519PublicKey], ...]
    prefix: ClassVar[bytes] = DEVICE_LIST_PREFIX
    link_prefix: ClassVar[bytes] = DEVICE_LINK_PREFIX
    requires_primary: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check(self.account, self.version, self.devices, LocalProtocolError,
               self.requires_primary)

    def body(self) -> bytes:
        """The msgpack part: ``[account, version, [[device_id, dik_pub], ...]]``."""
        return msgpack.packb([self.account, self.version,
                              [[i, key.raw] for i, key in self.devices]])

    def signed_bytes(self) -> bytes:
        """The exact bytes the AIK signs."""
        return self.prefix + self.body()

    def sign(self, account_identity: IdentityKeyPair) -> SignedDeviceList:
        """Sign with the account identity key."""
        return SignedDeviceList(self, self.body(), account_identity.sign(self.signed_bytes()))

    def link_message(self, account_key: Ed25519PublicKey) -> bytes:
        """The bytes each linked device of this list signs (:func:`link_message`)."""
        return link_message(account_key, self.account, self.link_prefix)

    @property
    def device_ids(self) -> list[int]:
        """The device ids, ascending."""
        return [device_id for device_id, _ in self.devices]

    def identity_of(self, device_id: int) -> Ed25519PublicKey | None:
        """The device identity key of ``device_id``, if listed."""
        return next((key for i, key in self.devices if i == device_id), None)


@dataclass(frozen=True, slots=True)
class SignedDeviceList:
    """A device list with its msgpack body bytes and the AIK's signature over them."""

    device_list: DeviceList
    body: bytes
    signature: bytes
    list_type: ClassVar[type[DeviceList]] = DeviceList
    """The kind of list :meth:`verify` reads."""

    @classmethod
    def verify(cls, account_key: Ed25519PublicKey, body: bytes,
               signature: bytes) -> Self:
        """Check the AIK signature over ``body``, then parse it strictly.

        Raises :class:`InvalidSignatureError`, :class:`MalformedError` (also for a device key
        equal to the account key: keys are never shared between the two roles), or
        :class:`TooManyDevicesError` for a well-formed, signed list of more than five devices.
        """
        if type(body) is not bytes:
            raise MalformedError("device list body must be bytes")
        kind = cls.list_type
        account_key.verify(kind.prefix + body, signature)
        try:
            account, version, entries = DEVICE_LIST_LIMITS.unpack(body)
            devices = tuple((i, Ed25519PublicKey(key)) for i, key in entries)
            _check(account, version, devices, MalformedError, kind.requires_primary)
        except TooManyDevicesError:
            raise
        except (ValueError, TypeError, msgpack.UnpackException, InvalidKeyError):
            raise MalformedError("device list body is malformed") from None
        if any(key.raw == account_key.raw for _, key in devices):
            raise MalformedError("a device key equals the account key (the AIK and every "
                                 "DIK must differ)")
        return cls(kind(account, version, devices), body, signature)

    def check_links(self, account_key: Ed25519PublicKey, signatures: Mapping[int, bytes]) -> None:
        """Every linked device must have signed :func:`link_message` for this account and key.

        ``signatures`` maps device ids to link signatures (the relay keeps those the devices
        made when they were linked). A list signed by one account's key could otherwise claim
        another account's device (identity misbinding): the device's own signature says which
        account it joined. :class:`MalformedError` for a missing signature,
        :class:`InvalidSignatureError` for one that does not verify.
        """
        device_list = self.device_list
        message = device_list.link_message(account_key)
        for device_id, key in device_list.devices:
            if device_list.requires_primary and device_id == PRIMARY_DEVICE_ID:
                continue
            signature = signatures.get(device_id)
            if signature is None:
                raise MalformedError(f"linked device {device_id} has no link signature")
            key.verify(message, signature)

    def check_newer_than(self, known: SignedDeviceList | None) -> None:
        """Refuse a list older than ``known`` (or of the same version with other contents)."""
        if known is None:
            return
        ours, theirs = self.device_list.version, known.device_list.version
        if ours < theirs or (ours == theirs and self.body != known.body):
            raise StaleDeviceListError(
                f"device list version {ours} is older than the known version {theirs}")


def link_message(account_key: Ed25519PublicKey, account: str,
                 prefix: bytes = DEVICE_LINK_PREFIX) -> bytes:
    """The bytes a linked device signs with its DIK to prove it belongs to the account."""
    return prefix + account_key.raw + account.encode()

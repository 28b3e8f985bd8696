"""Signed device lists (DESIGN §6): what SignedDeviceList.verify refuses."""

from __future__ import annotations

import pytest

from e2e_proto.devices import DeviceList, SignedDeviceList
from e2e_proto.errors import MalformedError
from e2e_proto.keys import IdentityKeyPair


@pytest.mark.parametrize("shared_device", [0, 1])
def test_a_device_key_equal_to_the_account_key_is_refused(shared_device: int) -> None:
    aik = IdentityKeyPair.generate()
    keys = [IdentityKeyPair.generate().public_key, IdentityKeyPair.generate().public_key]
    keys[shared_device] = aik.public_key
    signed = DeviceList("alice", 3, ((0, keys[0]), (1, keys[1]))).sign(aik)
    with pytest.raises(MalformedError, match="account key"):
        SignedDeviceList.verify(aik.public_key, signed.body, signed.signature)


def test_distinct_keys_verify() -> None:
    aik = IdentityKeyPair.generate()
    signed = DeviceList("alice", 1, ((0, IdentityKeyPair.generate().public_key),)).sign(aik)
    verified = SignedDeviceList.verify(aik.public_key, signed.body, signed.signature)
    assert verified.device_list == signed.device_list

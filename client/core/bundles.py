"""Starting sessions from the prekey bundles a server hands out, trusting nothing it sent.

Both transports fetch bundles for devices that have no session yet. A bundle that is
malformed, carries a device key other than the one the client knows for that device, has a
bad signed-prekey signature, or is missing altogether is refused with one clear
:class:`~client.core.errors.ClientError`, before any session is stored for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from e2e_proto import relay_api
from e2e_proto.address import Address
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey, PreKeyBundle
from e2e_proto.primitives import RandomSource
from e2e_proto.session import process_prekey_bundle
from e2e_proto.stores import ProtocolStore

from .errors import ClientError


def start_sessions(store: ProtocolStore, account: str, wanted: Sequence[int], bundles: object,
                   trusted: Mapping[int, Ed25519PublicKey], random: RandomSource) -> None:
    """Make a session with each device of ``account`` in ``wanted`` from the server's
    ``bundles`` (the ``bundles`` field of a ``fetch_bundles`` answer).

    ``trusted`` maps a device id to the device key the client trusts for it (from a verified
    device list or a pinned key). A device that got a session meanwhile (its own
    prekey message arrived) is skipped; every other wanted device needs a valid bundle.
    """
    if type(bundles) is not list or len(bundles) > len(wanted):
        raise ClientError(f"the server's answer for {account}'s prekey bundles is malformed")
    parsed: dict[int, PreKeyBundle] = {}
    for fields in bundles:
        try:
            device_id, bundle = relay_api.bundle_from_wire(fields)
        except E2EProtoError:
            raise ClientError(f"the server sent a malformed prekey bundle for {account}"
                              ) from None
        if device_id not in wanted or device_id in parsed:
            raise ClientError(f"the server sent a prekey bundle for {account} that was not "
                              "asked for")
        parsed[device_id] = bundle
    for device_id in wanted:
        address = Address(account, device_id)
        if store.load_session(address) is not None:
            continue  # a session arrived (their prekey message) while we fetched
        bundle = parsed.get(device_id)
        if bundle is None:
            raise ClientError(f"the server sent no prekey bundle for {address}; try again later")
        if bundle.identity_key != trusted.get(device_id):
            raise ClientError(f"the server's prekeys for {address} are not signed by the "
                              "device key this client knows for it; refusing to encrypt to it")
        try:
            process_prekey_bundle(store, address, bundle, random)
        except E2EProtoError as exc:
            raise ClientError(f"the prekey bundle of {address} is unusable ({exc}); refusing "
                              "to encrypt to it") from None


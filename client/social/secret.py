"""Secret conversations: a one-to-one conversation made end-to-end encrypted for good, and
sending to it (text encrypted for every other device of both members; the server gets only
envelopes). A device's identity key is pinned on first use and a changed one is refused."""

from __future__ import annotations

from e2e_proto import relay_api
from e2e_proto import social_api as api
from e2e_proto.address import Address
from e2e_proto.media import MEDIA_KIND, MediaPayload
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher, process_prekey_bundle

from ..core.connection import ServerError
from ..core.errors import ClientError
from .base import SessionBase
from .checks import check_name
from .errors import refused
from .media import media_text
from .state import SocialEvent


class Secret(SessionBase):
    """Making a conversation secret and sending encrypted text to it."""

    async def make_secret(self, name: str) -> bool:
        """Make the one-to-one conversation with ``name`` end-to-end encrypted, for both sides.

        Returns False when it was secret already.
        """
        check_name(name)
        info = await self.conversation(name)
        if info["kind"] != "direct":
            raise ClientError("secret conversations are one to one; groups on the social "
                              "transport are not end-to-end encrypted")
        response = await self.request("secret", conversation=name)
        self.state.mark_secret(name)
        return bool(response["changed"])

    async def _send_secret(self, name: str, members: list[str], text: str | None,
                           client_id: bytes, media: MediaPayload | None = None) -> int:
        """Send ``text``, or the file ``media`` announces (its blob uploaded), end to end
        encrypted; the server's message id."""
        assert self.address is not None
        me = self.address
        ts = int(self.client.clock() * 1000)
        extra = {}
        if media is None:
            payload = Payload.new("text", ts, self.client.random, text=text).encode()
        else:
            payload = Payload.new(MEDIA_KIND, ts, self.client.random, **media.fields()).encode()
            extra = {"blobs": [media.blob_id]}  # the server lets the members download it
            text = media_text(media)
        for attempt in range(2):
            targets = await self._secret_targets(members)
            cipher = SessionCipher(self.state.protocol, me, self.client.random)
            envelopes = [cipher.encrypt(target, payload).encode() for target in targets]
            try:
                response = await self.connection.request("send", conversation=name,
                                                         envelopes=envelopes,
                                                         client_id=client_id, **extra)
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt == 0:
                    for account, device_id in exc.details.get("stale", []):
                        self.state.protocol.delete_session(Address(account, device_id))
                    continue
                if exc.code == api.NOT_SECRET:
                    raise ClientError(f"the server says the conversation with {name} is not "
                                      "secret, but it was made secret: refusing to send it "
                                      "in the clear") from None
                raise refused(exc) from None
            message_id = int(response["message"])
            with self.state.protocol.transaction():
                self.state.save_secret(SocialEvent(0, "message", name, me.account,
                                                   me.device_id, int(response["ts"]),
                                                   message_id, text, secret=True))
                self.state.remember_message(message_id, name)
            return message_id
        raise AssertionError("unreachable")

    async def _secret_targets(self, members: list[str]) -> list[Address]:
        """Every keyed device of ``members`` but this one, each with a session (made here)."""
        assert self.address is not None
        targets: list[Address] = []
        for member in members:
            response = await self.request("get_devices", account=member)
            keys = {d: k for d, k in response["devices"] if k is not None}
            missing = []
            for device_id in keys:
                address = Address(member, device_id)
                if address == self.address:
                    continue
                targets.append(address)
                if self.state.protocol.load_session(address) is None:
                    missing.append(device_id)
            if missing:
                bundles = await self.request("fetch_bundles", account=member,
                                             device_ids=missing)
                for fields in bundles["bundles"]:
                    device_id, bundle = relay_api.bundle_from_wire(fields)
                    address = Address(member, device_id)
                    known = self.state.protocol.get_identity(address)
                    if bundle.identity_key.raw != keys.get(device_id) or (
                            known is not None and known != bundle.identity_key):
                        raise ClientError(f"the identity key of {address} changed; refusing "
                                          "to encrypt to it")
                    process_prekey_bundle(self.state.protocol, address, bundle,
                                          self.client.random)
        return targets

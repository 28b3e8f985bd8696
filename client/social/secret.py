"""Secret conversations: a one-to-one conversation made end-to-end encrypted for good, and
sending to it (text encrypted for every other device of both members; the server gets only
envelopes). Each member's set of device keys is pinned on first use (:mod:`.device_pins`): a
device added or changed later gets nothing until the user accepts it."""

from __future__ import annotations

from e2e_proto import social_api as api
from e2e_proto.address import Address
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.media import MEDIA_KIND, MediaPayload
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher

from ..core.bundles import start_sessions
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
        """Every keyed device of ``members`` but this one, each with a session (made here).

        Refuses (:class:`ClientError`) while a member's listed devices are not all accepted.
        """
        assert self.address is not None
        targets: list[Address] = []
        for member in members:
            keys = await self.checked_devices(member)
            missing = []
            for device_id in keys:
                address = Address(member, device_id)
                if address == self.address:
                    continue
                targets.append(address)
                if self.state.protocol.load_session(address) is None:
                    missing.append(device_id)
            if missing:
                trusted = {device_id: _device_key(keys[device_id], Address(member, device_id))
                           for device_id in missing}
                bundles = await self.request("fetch_bundles", account=member,
                                             device_ids=missing)
                start_sessions(self.state.protocol, member, missing, bundles.get("bundles"),
                               trusted, self.client.random)
        return targets


def _device_key(raw: object, address: Address) -> Ed25519PublicKey:
    """A device key the server listed, as a key; :class:`ClientError` when it is not one."""
    try:
        return Ed25519PublicKey(raw)  # type: ignore[arg-type]
    except E2EProtoError:
        raise ClientError(f"the server listed a malformed device key for {address}") from None


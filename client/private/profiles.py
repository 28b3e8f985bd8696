"""Profiles and status updates on the private transport, end to end encrypted to contacts.

Setting the profile (display name, about, optionally an avatar file) or posting a status update
keeps it here and sends it, as a ``profile`` or ``status`` payload, to every device of every
contact on this transport (and to this account's other devices), like a message: the relay
stores only the envelopes, and an avatar only as an encrypted blob granted to those devices.
Received ones are kept in the :class:`~client.private.profile_book.ProfileBook` (the newest
profile version per account; status updates until they expire) and not shown as messages.
Nothing here goes to contacts on the other transport (their devices cannot fetch the relay's
blobs); a linked social account gets the allow-listed part through the account link
(:mod:`.account_link`).
"""

from __future__ import annotations

from pathlib import Path

from e2e_proto.address import is_foreign
from e2e_proto.errors import E2EProtoError
from e2e_proto.payload import Payload
from e2e_proto.profiles import Profile, ProfileUpdate, StatusUpdate

from ..core.errors import ClientError
from ..core.files import FileRecord
from .base import SessionBase
from .profile_book import KnownProfile, KnownStatus


class Profiles(SessionBase):
    """Setting, sending, receiving and showing profiles and status updates."""

    async def set_profile(self, name: str | None = None, about: str | None = None,
                          avatar: str | Path | None = None) -> KnownProfile:
        """Change this account's profile (what is not given stays) and send it to every
        contact; the profile as kept. ``avatar`` is a file sent end to end encrypted."""
        assert self.address is not None
        me = self.address.account
        own = self.state.profiles.profile(me)
        try:
            profile = Profile(name if name is not None else own.profile.name if own else "",
                              about if about is not None else own.profile.about if own else "")
        except E2EProtoError as exc:
            raise ClientError(str(exc)) from None
        media, source = None, None
        if avatar is not None:
            source = Path(avatar)
            outgoing, media = await self._upload(source, me, None, None)
        elif own is not None and own.avatar is not None:
            kept = self.state.files.get(own.avatar)
            media = None if kept is None else kept.media
        update = ProfileUpdate(profile, (own.version if own else 0) + 1, media)
        payload = update.to_payload(self._now_ms(), self.client.random)
        key = None if media is None else payload.id.hex()
        with self.state.transaction():
            self.state.profiles.keep_profile(me, update, key)
            if key is not None and media is not None:
                self.state.files.add(key, media)
                if source is not None:
                    self.state.files.saved(key, source.resolve(), outgoing.sha256)
                    self.state.files.forget_outgoing(outgoing)
        await self._to_contacts(payload, [] if media is None else [media.blob_id])
        await self.share_profile()
        kept_profile = self.state.profiles.profile(me)
        assert kept_profile is not None
        return kept_profile

    async def post_status(self, text: str) -> KnownStatus:
        """Post a status update (shown for 24 hours) to every contact; the update as kept."""
        assert self.address is not None
        try:
            status = StatusUpdate(text, self._now_ms())
        except E2EProtoError as exc:
            raise ClientError(str(exc)) from None
        payload = status.to_payload(self.client.random)
        with self.state.transaction():
            self.state.profiles.add_status(payload.id, self.address.account, status)
        await self._to_contacts(payload, [])
        await self.share_profile()
        return KnownStatus(payload.id, self.address.account, status)

    async def profile_of(self, account: str) -> tuple[KnownProfile | None, FileRecord | None]:
        """The newest profile known for ``account`` (this account's own by default) and its
        avatar file, downloaded now if it was not yet."""
        known = self.state.profiles.profile(account)
        if known is None or known.avatar is None:
            return known, None
        record = self.state.files.get(known.avatar)
        if record is not None and record.path is None:
            record = await self._fetch(record)
        return known, record

    def statuses(self, account: str | None = None) -> list[KnownStatus]:
        """The live status updates (of ``account``, or of this account and every contact),
        newest first."""
        return self.state.profiles.live_statuses(self._now_ms(), account)

    def _take_profile_payload(self, sender: str, payload: Payload) -> None:
        """Keep a received ``profile`` or ``status`` payload of ``sender`` (in the caller's
        transaction); :class:`~e2e_proto.errors.MalformedError` when it is invalid."""
        if payload.kind == "status":
            self.state.profiles.add_status(payload.id, sender, StatusUpdate.from_payload(payload))
            return
        update = ProfileUpdate.from_payload(payload)
        key = None if update.avatar is None else payload.id.hex()
        if self.state.profiles.keep_profile(sender, update, key) and update.avatar is not None:
            self.state.files.add(payload.id.hex(), update.avatar)

    async def _to_contacts(self, payload: Payload, blobs: list[bytes]) -> None:
        """Send ``payload`` to every contact on this transport and this account's other
        devices; a contact it cannot go to now (a key change not accepted) gets a notice."""
        assert self.address is not None
        me = self.address.account
        contacts = [c for c in self.state.contacts() if c != me and not is_foreign(c)]
        for contact in contacts or [me]:
            try:
                await self.send_payload(contact, payload, blobs)
            except ClientError as exc:
                self.notices.append(f"not sent to {contact}: {exc}")

    def _now_ms(self) -> int:
        return int(self.client.clock() * 1000)

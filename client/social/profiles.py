"""Profiles and status updates on the social transport: kept by the server (as this
transport's other content), with the private transport's limits (:mod:`e2e_proto.profiles`).

An avatar is a file like any other here: encrypted on this device and uploaded as a blob, its
``media`` fields (key included) given to the server, which lets every account download it; so
it is not end-to-end encrypted, and the command line says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from e2e_proto.errors import E2EProtoError
from e2e_proto.media import MediaPayload
from e2e_proto.profiles import Profile, StatusUpdate

from ..core.errors import ClientError
from ..core.files import FileRecord
from ..core.transfer import fetch, guess_mime, prepare, send_blob
from .base import SessionBase
from .checks import check_name


class ShownProfile(NamedTuple):
    """An account's profile as the server keeps it, with its avatar file (if any)."""

    account: str
    profile: Profile
    avatar: FileRecord | None


class Profiles(SessionBase):
    """Setting and reading profiles, posting and listing status updates."""

    async def set_profile(self, name: str | None = None, about: str | None = None,
                          avatar: str | Path | None = None) -> ShownProfile:
        """Change this account's profile (what is not given stays); the profile as kept."""
        assert self.address is not None
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = name
        if about is not None:
            fields["about"] = about
        try:
            Profile(name or "", about or "")
        except E2EProtoError as exc:
            raise ClientError(str(exc)) from None
        if avatar is not None:
            source = Path(avatar)
            outgoing = await prepare(self.state.files, source, self.address.account,
                                     self.client.random)
            await send_blob(self.connection, outgoing, "social server")
            media = MediaPayload(outgoing.blob_id, outgoing.key, outgoing.header,
                                 outgoing.size, guess_mime(source.name), source.name[:255])
            fields["avatar"] = media.fields()
            with self.state.protocol.transaction():
                key = _avatar_key(self.address.account, media)
                self.state.files.add(key, media)
                self.state.files.saved(key, source.resolve(), outgoing.sha256)
                self.state.files.forget_outgoing(outgoing)
        return await self._shown(await self.request("profile_set", **fields))

    async def profile_of(self, account: str) -> ShownProfile:
        """``account``'s profile, its avatar downloaded now if it was not yet."""
        check_name(account)
        return await self._shown(await self.request("profile_get", account=account))

    async def _shown(self, answer: dict[str, Any]) -> ShownProfile:
        try:
            profile = Profile(answer["name"], answer["about"])
            media = (None if answer.get("avatar") is None
                     else MediaPayload.from_fields(answer["avatar"]))
            account = str(answer["account"])
        except (KeyError, E2EProtoError):
            raise ClientError("the social server sent a malformed profile") from None
        record = None
        if media is not None:
            key = _avatar_key(account, media)
            with self.state.protocol.transaction():
                self.state.files.add(key, media)
            record = self.state.files.get(key)
            if record is not None and record.path is None:
                record = await fetch(self.connection, self.state.files, record, "social server")
        return ShownProfile(account, profile, record)

    async def post_status(self, text: str) -> int:
        """Post a status update (shown for 24 hours); the time it was posted (ms)."""
        try:
            StatusUpdate(text, 0)
        except E2EProtoError as exc:
            raise ClientError(str(exc)) from None
        return int((await self.request("status_post", text=text))["posted_ms"])

    async def statuses(self) -> list[tuple[str, StatusUpdate]]:
        """The live status updates of this account and of those it shares a conversation
        with, newest first."""
        answer = await self.request("status_list")
        try:
            return [(str(account), StatusUpdate(text, posted))
                    for account, text, posted in answer["statuses"]]
        except (KeyError, ValueError, TypeError, E2EProtoError):
            raise ClientError("the social server sent malformed status updates") from None


def _avatar_key(account: str, media: MediaPayload) -> str:
    """The file record of an avatar: per account and blob."""
    return f"avatar-{account}-{media.blob_id.hex()[:32]}"

"""Profiles and status updates on the social server (server-side, as this transport's content).

``profile_set`` changes the caller's display name, about text and avatar (the ``media`` fields of
a file the account uploaded; what is not given stays), ``profile_get`` reads any account's
profile, ``status_post`` keeps a status update for 24 hours and ``status_list`` gives the live
updates of the caller and of the accounts it shares a conversation with. The limits are the
private transport's (:mod:`e2e_proto.profiles`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from e2e_proto import social_api as api
from e2e_proto.errors import E2EProtoError
from e2e_proto.profiles import Profile, StatusUpdate

from ..common.blob_requests import own_complete_blobs
from ..common.requests import RequestError
from .fields import name_field
from .messages import media_field
from .profile_store import StoredProfile, StoredStatus

if TYPE_CHECKING:
    from .connection import SocialConnection

MAX_LISTED_STATUSES = 200


async def profile_set(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Change the caller's profile; the profile as stored."""
    assert conn.address is not None
    account = conn.address.account
    old = conn.store.profiles.profile(account) or StoredProfile("", "", None)
    name, about = frame.get("name", old.name), frame.get("about", old.about)
    try:
        Profile(name, about)  # type: ignore[arg-type]
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, str(exc)) from None
    avatar, blob = old.avatar, None
    if old.avatar is not None:
        blob = msgpack.unpackb(old.avatar)["blob_id"]
    if frame.get("avatar") is not None:
        media = media_field({"media": frame["avatar"]})
        assert media is not None
        await own_complete_blobs(conn, [media.blob_id])
        avatar, blob = msgpack.packb(media.fields()), media.blob_id
    conn.store.profiles.set_profile(account, StoredProfile(name, about, avatar), blob)
    return _profile(account, StoredProfile(name, about, avatar))


async def profile_get(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """An account's profile (empty when it set none)."""
    account = name_field(frame, "account")
    if not conn.store.account_exists(account):
        raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
    return _profile(account, conn.store.profiles.profile(account)
                    or StoredProfile("", "", None))


def _profile(account: str, profile: StoredProfile) -> dict[str, Any]:
    return {"account": account, "name": profile.name, "about": profile.about,
            "avatar": None if profile.avatar is None else msgpack.unpackb(profile.avatar)}


async def status_post(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Keep a status update of the caller for 24 hours."""
    assert conn.address is not None
    try:
        status = StatusUpdate(frame.get("text"), conn.server.now_ms())  # type: ignore[arg-type]
    except E2EProtoError as exc:
        raise RequestError(api.BAD_REQUEST, str(exc)) from None
    conn.store.profiles.add_status(StoredStatus(conn.address.account, status.text,
                                                status.posted_ms))
    return {"posted_ms": status.posted_ms}


async def status_list(conn: SocialConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """The live status updates of the caller and its contacts, newest first:
    ``[[account, text, posted_ms], ...]`` (at most 200)."""
    assert conn.address is not None
    profiles = conn.store.profiles
    statuses = profiles.statuses(profiles.contacts(conn.address.account), conn.server.now_ms())
    return {"statuses": [list(s) for s in statuses[:MAX_LISTED_STATUSES]]}

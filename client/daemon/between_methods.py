"""The methods between the transports: ``profile``, ``status``, the account link and
cross-transport chats. Each does what its ``e2e-chat`` command does (:mod:`client.cli.between`:
the same steps, on the daemon's session) and returns the command's result as JSON; each
``*_from_json`` gives back the objects the command's printers take, for the CLI's client mode.

A private method's result carries ``notices``: the warnings the direct command prints on stderr
(a contact the profile could not go to, ...), taken off the session, so they are not queued as
``notice`` events too. ``link_account`` needs both of the home's accounts: the daemon holds
the social login it signs with only when the home has one (:func:`_social_login`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from e2e_proto.account_link import (
    SharedAccount,
    SharedDevice,
    SharedProfile,
    SharedRecord,
    SharedStatus,
)
from e2e_proto.capabilities import SOCIAL
from e2e_proto.profiles import Profile

from ..cli import between
from ..core.errors import ClientError
from ..private.account_link import SharingLogEntry, SharingReport
from ..private.session import PrivateSession
from ..social.cross import CrossStatus
from ..social.profiles import ShownProfile
from .accounts import Account, PrivateAccount, SocialAccount
from .events import file_from_params, file_params


@contextlib.asynccontextmanager
async def _private(account: PrivateAccount) -> AsyncIterator[tuple[PrivateSession, list[str]]]:
    """The account's session, and the list of the notices it gains in the block (taken off the
    session when the block succeeds). One the daemon's receiving showed first is a ``notice``
    event instead."""
    async with account.session() as session:
        before = {id(notice): notice for notice in session.notices}  # alive: ids stay theirs
        notices: list[str] = []
        yield session, notices
        notices += [notice for notice in session.notices if id(notice) not in before]
        session.notices[:] = [notice for notice in session.notices if id(notice) in before]


# -- profiles ---------------------------------------------------------------------------------


async def private_profile_set(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Change the profile (what is not given stays) and send it to every contact."""
    async with _private(account) as (session, notices):
        shown = await between.set_private_profile(session, params["name"], params["about"],
                                                  params["avatar"])
    return {**profile_json(shown, True), "notices": notices}


async def private_profile_show(account: PrivateAccount, params: dict[str, Any]
                               ) -> dict[str, Any]:
    """The newest profile known for ``name`` (this account's by default)."""
    async with _private(account) as (session, notices):
        shown = await between.private_profile(session, params["name"])
    return {**profile_json(shown, True), "notices": notices}


async def social_profile_set(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Change the profile the social server keeps (what is not given stays)."""
    async with account.session() as session:
        shown = await session.set_profile(params["name"], params["about"], params["avatar"])
    return profile_json(shown, False)


async def social_profile_show(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The profile of ``name`` (this account's by default), its avatar downloaded."""
    async with account.session() as session:
        return profile_json(await between.social_profile(session, params["name"]), False)


def profile_json(shown: ShownProfile, end_to_end: bool) -> dict[str, Any]:
    """``{account, name, about, avatar: a file's fields or null, end_to_end}``."""
    return {"account": shown.account, "name": shown.profile.name, "about": shown.profile.about,
            "avatar": None if shown.avatar is None else file_params(shown.avatar),
            "end_to_end": end_to_end}


def profile_from_json(result: dict[str, Any]) -> ShownProfile:
    """Inverse of :func:`profile_json` (without ``end_to_end``)."""
    avatar = result["avatar"]
    return ShownProfile(result["account"], Profile(result["name"], result["about"]),
                        None if avatar is None else file_from_params(avatar, ""))


# -- status updates ---------------------------------------------------------------------------


async def private_status_post(account: PrivateAccount, params: dict[str, Any]
                              ) -> dict[str, Any]:
    """Post a status update to every contact: ``{posted_ms, notices}``."""
    async with _private(account) as (session, notices):
        posted = await session.post_status(params["text"])
    return {"posted_ms": posted.status.posted_ms, "notices": notices}


async def private_status_list(account: PrivateAccount, params: dict[str, Any]
                              ) -> dict[str, Any]:
    """The live status updates of this account and its contacts, newest first."""
    async with _private(account) as (session, notices):
        statuses = between.private_statuses(session)
    return {"statuses": statuses_json(statuses), "notices": notices}


async def social_status_post(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Post a status update: ``{posted_ms}`` (the server's time)."""
    async with account.session() as session:
        return {"posted_ms": await session.post_status(params["text"])}


async def social_status_list(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The live status updates of this account and those it shares a conversation with."""
    async with account.session() as session:
        return {"statuses": statuses_json(await between.social_statuses(session))}


def statuses_json(statuses: list[between.Status]) -> list[dict[str, Any]]:
    """``[{account, text, posted_ms}]``."""
    return [{"account": account, "text": text, "posted_ms": posted}
            for account, text, posted in statuses]


def statuses_from_json(statuses: list[dict[str, Any]]) -> list[between.Status]:
    """Inverse of :func:`statuses_json`."""
    return [(s["account"], s["text"], s["posted_ms"]) for s in statuses]


# -- the account link -------------------------------------------------------------------------


def _social_login(account: PrivateAccount, social_home: str | None) -> Account[Any, Any]:
    """The home's social account, for ``link-account --social-home`` naming the daemon's home
    (or nothing); :class:`ClientError` when the daemon does not hold that social login."""
    home = account.client.state.home
    if social_home is not None and Path(social_home).resolve() != home.resolve():
        raise ClientError(f"the daemon serving {home} signs with the social login in {home} "
                          f"only, not with the one in {social_home}: stop the daemon to link "
                          "with that one")
    social = account.siblings.get(SOCIAL)
    if social is None:
        raise ClientError(f"link-account needs a logged-in device of the social account, and "
                          f"the daemon serving {home} has none: log in there on the social "
                          "transport before starting the daemon, or stop it and run "
                          "link-account --social-home DIR")
    return social


async def link_account(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Link the account (on its primary) to the home's social account, both keys signing:
    ``{account, social_account, sharing}``."""
    social = _social_login(account, params["social_home"])
    async with social.session():  # its device key is published
        pass
    async with account.session() as session:
        social_account, report = await between.link_accounts(session, social.client.state)
    return {"account": account.account, "social_account": social_account,
            "sharing": sharing_json(report)}


async def unlink_account(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """End the account link: ``{social_account, notices}``."""
    async with _private(account) as (session, notices):
        social_account = await session.unlink_account()
    return {"social_account": social_account, "notices": notices}


async def sharing(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """What the account link shared with the social server, and when."""
    async with _private(account) as (session, notices):
        report = await session.sharing_log()
    return {**sharing_json(report), "notices": notices}


async def linked(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """The private account linked to this one: ``{linked: null | {account, at, record}}``."""
    async with account.session() as session:
        return linked_json(await session.linked_account())


def linked_json(shown: between.Linked | None) -> dict[str, Any]:
    """``{linked: null | {account, at, record}}``."""
    return {"linked": None if shown is None else {
        "account": shown[0], "at": shown[1],
        "record": None if shown[2] is None else record_json(shown[2])}}


def linked_from_json(result: dict[str, Any]) -> between.Linked | None:
    """Inverse of :func:`linked_json`."""
    shown = result["linked"]
    if shown is None:
        return None
    record = shown["record"]
    return (shown["account"], shown["at"], None if record is None else record_from_json(record))


def record_json(record: SharedRecord) -> dict[str, Any]:
    """A shared record: ``{account, linked_ms, display_name, about, statuses: [{text,
    posted_ms}], devices: [{name, last_seen_ms}]}``."""
    return {"account": record.account.private_account, "linked_ms": record.account.linked_ms,
            "display_name": record.profile.display_name, "about": record.profile.about,
            "statuses": [{"text": s.text, "posted_ms": s.posted_ms} for s in record.statuses],
            "devices": [{"name": d.name, "last_seen_ms": d.last_seen_ms}
                        for d in record.devices]}


def record_from_json(record: dict[str, Any]) -> SharedRecord:
    """Inverse of :func:`record_json`."""
    return SharedRecord(SharedAccount(record["account"], record["linked_ms"]),
                        SharedProfile(record["display_name"], record["about"]),
                        tuple(SharedStatus(s["text"], s["posted_ms"])
                              for s in record["statuses"]),
                        tuple(SharedDevice(d["name"], d["last_seen_ms"])
                              for d in record["devices"]))


def sharing_json(report: SharingReport) -> dict[str, Any]:
    """The sharing log: ``{linked: null | {link_id, account, at}, cross, entries: [{at, kind,
    link_id, summary, record}]}`` (ids in hex, times in seconds)."""
    live = report.linked
    return {"linked": None if live is None else {"link_id": live[0].hex(), "account": live[1],
                                                 "at": live[2]},
            "cross": report.cross,
            "entries": [{"at": e.at, "kind": e.kind, "link_id": e.link_id.hex(),
                         "summary": e.summary,
                         "record": None if e.record is None else record_json(e.record)}
                        for e in report.entries]}


def sharing_from_json(result: dict[str, Any]) -> SharingReport:
    """Inverse of :func:`sharing_json`."""
    live = result["linked"]
    return SharingReport(
        [SharingLogEntry(e["at"], e["kind"], bytes.fromhex(e["link_id"]), e["summary"],
                         None if e["record"] is None else record_from_json(e["record"]))
         for e in result["entries"]],
        None if live is None else (bytes.fromhex(live["link_id"]), live["account"], live["at"]),
        result["cross"])


# -- cross-transport chats --------------------------------------------------------------------


async def private_cross_on(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Take chats with the social transport: ``{account, enabled, notices}``."""
    return await _private_cross_set(account, True)


async def private_cross_off(account: PrivateAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Stop taking them: ``{account, enabled, notices}``."""
    return await _private_cross_set(account, False)


async def _private_cross_set(account: PrivateAccount, enabled: bool) -> dict[str, Any]:
    async with _private(account) as (session, notices):
        await session.cross_set(enabled)
    return {"account": account.account, "enabled": enabled, "notices": notices}


async def private_cross_status(account: PrivateAccount, params: dict[str, Any]
                               ) -> dict[str, Any]:
    """Whether the account takes them: ``{account, enabled, notices}``."""
    async with _private(account) as (session, notices):
        enabled = await between.private_cross_enabled(session)
    return {"account": account.account, "enabled": enabled, "notices": notices}


async def social_cross_on(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Opt in (make the cross identity, or ask to join it): ``{account, enabled, outcome,
    device_key, devices}``."""
    async with account.session() as session:
        status = await session.cross_on()
    return {"account": account.account, "enabled": between.cross_on_enabled(status),
            "outcome": status.outcome, "device_key": status.device_key.hex(),
            "devices": status.devices}


async def social_cross_off(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Opt out: ``{account, enabled}``."""
    async with account.session() as session:
        await session.cross_off()
    return {"account": account.account, "enabled": False}


async def social_cross_status(account: SocialAccount, params: dict[str, Any]
                              ) -> dict[str, Any]:
    """``{account, enabled, devices, joins: [{device_id, key}]}``."""
    async with account.session() as session:
        enabled, devices, joins = await session.cross_report()
    return {"account": account.account, "enabled": enabled, "devices": devices,
            "joins": [{"device_id": device_id, "key": key.hex()} for device_id, key in joins]}


def cross_status_from_json(result: dict[str, Any]) -> CrossStatus | None:
    """What ``cross on`` did, from a social ``cross_on`` result (None from the others)."""
    if "outcome" not in result:
        return None
    return CrossStatus(result["outcome"], bytes.fromhex(result["device_key"]),
                       result["devices"])


async def cross_approve(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Add a device that asked to join the cross identity: ``{device_id, devices}``."""
    async with account.session() as session:
        devices = await session.cross_approve(params["device_id"], params["key"])
    return {"device_id": params["device_id"], "devices": devices}


async def cross_remove(account: SocialAccount, params: dict[str, Any]) -> dict[str, Any]:
    """Take a device off the cross identity's list: ``{device_id, devices}``."""
    async with account.session() as session:
        devices = await session.cross_remove(params["device_id"])
    return {"device_id": params["device_id"], "devices": devices}

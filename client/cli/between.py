"""``e2e-chat`` commands between the transports, on either: ``profile``, ``status``,
``link-account``, ``unlink-account``, ``sharing``, ``linked`` and ``cross``.

:func:`run_private` and :func:`run_social` run one of them on a session of that transport,
through the named steps the daemon's methods call too (:func:`set_private_profile`,
:func:`link_accounts`, ...); the ``print_*`` functions are their output, which the CLI's client
mode prints a daemon's results with.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from e2e_proto.account_link import SharedRecord
from e2e_proto.capabilities import PRIVATE, SOCIAL

from ..core.errors import ClientError
from ..daemon.home import command_guard
from ..private.account_link import SharingReport
from ..private.session import PrivateClient, PrivateSession
from ..social.cross import CrossStatus
from ..social.profiles import ShownProfile
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialState
from .common import tls_from_args

COMMANDS = ("profile", "status", "link-account", "unlink-account", "sharing", "linked", "cross")
PRIVATE_ONLY = ("link-account", "unlink-account", "sharing")
SOCIAL_ONLY = ("linked",)
SOCIAL_CROSS_ONLY = ("approve", "remove")
"""The ``cross`` actions of the social transport only (a cross identity's devices)."""
SHARING_SHOWN_AFTER_LINK = 5
"""The sharing log entries ``link-account`` shows."""

Status = tuple[str, str, int]
"""A status update as ``status list`` shows it: account, text, when posted (ms)."""
Linked = tuple[str, float, SharedRecord | None]
"""The private account a social one is linked to, when (seconds), and what it shared."""


def check_transport(transport: str, command: str, action: str | None = None) -> None:
    """Refuse, as the command line does, one of :data:`COMMANDS` (``cross ACTION``) that
    ``transport`` does not have."""
    if transport == PRIVATE and command in SOCIAL_ONLY:
        raise ClientError(f"'{command}' is for the social transport (--transport social)")
    if transport == PRIVATE and command == "cross" and action in SOCIAL_CROSS_ONLY:
        raise ClientError(f"'cross {action}' is for the social transport: a private account "
                          "already has its devices in its signed device list")
    if transport == SOCIAL and command in PRIVATE_ONLY:
        raise ClientError(f"'{command}' runs on the private transport (without --transport "
                          "social), on the private account's primary device")


async def set_private_profile(session: PrivateSession, name: str | None, about: str | None,
                              avatar: str | Path | None) -> ShownProfile:
    """``profile set`` on the private transport: the profile as kept, with its avatar file."""
    known = await session.set_profile(name, about, avatar)
    record = None if known.avatar is None else session.state.files.get(known.avatar)
    return ShownProfile(known.account, known.profile, record)


async def private_profile(session: PrivateSession, name: str | None) -> ShownProfile:
    """``profile show [NAME]`` on the private transport (this account's by default);
    :class:`ClientError` when no profile of it is known."""
    account = name or session.state.account or ""
    known, avatar = await session.profile_of(account)
    if known is None:
        raise ClientError(f"no profile known for {account!r} (it reaches you once you are "
                          "contacts)")
    return ShownProfile(account, known.profile, avatar)


async def social_profile(session: SocialSession, name: str | None) -> ShownProfile:
    """``profile show [NAME]`` on the social transport (this account's by default)."""
    return await session.profile_of(name or session.state.account or "")


def private_statuses(session: PrivateSession) -> list[Status]:
    """``status list`` on the private transport: newest first."""
    return [(s.account, s.status.text, s.status.posted_ms) for s in session.statuses()]


async def social_statuses(session: SocialSession) -> list[Status]:
    """``status list`` on the social transport: newest first."""
    return [(account, s.text, s.posted_ms) for account, s in await session.statuses()]


async def private_cross_enabled(session: PrivateSession) -> bool:
    """Whether the private account takes cross-transport chats (``cross status``)."""
    return (await session.sharing_log(1)).cross


def cross_on_enabled(status: CrossStatus) -> bool:
    """Whether the social account takes cross-transport chats after ``cross on``: not yet
    when this device only asked to join the account's cross identity."""
    return status.outcome != "joined"


async def link_accounts(session: PrivateSession, social: SocialState) -> tuple[str, SharingReport]:
    """``link-account``: link the private account of ``session`` (on its primary) to the
    social account logged in on ``social`` (its device key published already); that account
    and the newest entries of the sharing log."""
    account = social.account
    if account is None:
        raise ClientError(f"{social.home} is not logged in to a social account")
    await session.link_account(account, social.device_id, social.identity())
    return account, await session.sharing_log(SHARING_SHOWN_AFTER_LINK)


def _when(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "never"
    return datetime.datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M")


def print_profile(shown: ShownProfile, end_to_end: bool) -> None:
    """The output of ``profile show`` (and ``profile set``)."""
    print(f"{shown.account}: {shown.profile.name or '(no display name)'}")
    if shown.profile.about:
        print(f"  about: {shown.profile.about}")
    avatar = shown.avatar
    if avatar is not None:
        where = avatar.path or f"not saved ({avatar.error or 'not downloaded'})"
        note = "" if end_to_end else " (not end-to-end encrypted)"
        print(f"  avatar: {where}{note}")


def print_statuses(statuses: Sequence[Status]) -> None:
    """The output of ``status list``: ``[when] ACCOUNT: TEXT``, newest first."""
    if not statuses:
        print("no status updates in the last 24 hours")
    for account, text, posted_ms in statuses:
        print(f"[{_when(posted_ms)}] {account}: {text}")


def record_lines(record: SharedRecord) -> list[str]:
    """A shared record, field by field (what ``sharing`` and ``linked`` show)."""
    lines = [f"account: {record.account.private_account}@{PRIVATE}, linked "
             f"{_when(record.account.linked_ms)}",
             f"display name: {record.profile.display_name!r}",
             f"about: {record.profile.about!r}"]
    lines += [f"status ({_when(s.posted_ms)}): {s.text!r}" for s in record.statuses]
    lines.append(f"{len(record.devices)} device(s): " + ", ".join(
        f"{d.name or '(unnamed)'} (last seen {_when(d.last_seen_ms)})" for d in record.devices))
    return lines


def print_sharing(report: SharingReport) -> None:
    """The output of ``sharing``: the live link, the opt-in, then the log, oldest first."""
    if report.linked is None:
        print("not linked to a social account")
    else:
        print(f"linked to {report.linked[1]}@{SOCIAL} since {_when(report.linked[2] * 1000)}")
    print(f"cross-transport chats: {'on' if report.cross else 'off'}")
    for entry in report.entries:
        print(f"{_when(entry.at * 1000)}  {entry.kind:<9}  {entry.summary}")
        if entry.record is not None:
            for line in record_lines(entry.record):
                print(f"    {line}")


def print_linked_account(account: str, social: str, report: SharingReport) -> None:
    """The output of ``link-account``: what was linked, what is shared, and the log."""
    print(f"linked {account}@{PRIVATE} to {social}@{SOCIAL} (both signed). Shared with the "
          "social server, and nothing else: your account name, display name, about, status "
          "updates, device names and last seen.")
    print_sharing(report)


def print_unlinked_account(social: str) -> None:
    """The output of ``unlink-account``."""
    print(f"unlinked from {social}@{SOCIAL}; sharing stopped and the social server deletes "
          "what it received")


def print_linked(linked: Linked | None) -> None:
    """The output of ``linked``: the private account and what it shared."""
    if linked is None:
        print("not linked to a private account")
        return
    private_account, linked_at, record = linked
    print(f"linked to {private_account}@{PRIVATE} since {_when(linked_at * 1000)}")
    for line in [] if record is None else record_lines(record):
        print(f"  {line}")


def print_cross_status(transport: str, status: CrossStatus | None, enabled: bool,
                       account: str) -> None:
    """The output of ``cross on``, ``cross off`` and ``cross status``."""
    other = SOCIAL if transport == PRIVATE else PRIVATE
    if status is not None and status.outcome == "joined":
        print(f"asked to join {account}'s cross identity; on the device holding it run:")
        print(f"  e2e-chat --transport social cross approve DEVICE_ID {status.device_key.hex()}")
        print("(DEVICE_ID: this device's, as 'whoami' shows it)")
        return
    state = "on" if enabled else "off"
    reach = (f": {other} accounts that opted in reach you as {account}@{transport}"
             if enabled else "")
    print(f"cross-transport chats {state}{reach}")
    if status is not None and status.devices:
        print(f"devices taking part: {', '.join(map(str, status.devices))}")


def print_cross_report(account: str, enabled: bool, devices: list[int],
                       joins: Sequence[tuple[int, bytes]]) -> None:
    """The output of ``cross status`` on the social transport: the opt-in, the devices
    taking part and those asking to join."""
    print_cross_status(SOCIAL, CrossStatus("listed", b"", devices), enabled, account)
    for device_id, key in joins:
        print(f"device {device_id} asks to join (key {key.hex()[:16]}...): "
              f"'cross approve {device_id} KEY' after comparing its key")


def print_cross_devices(device_id: int, devices: Sequence[int], approved: bool) -> None:
    """The output of ``cross approve`` (``approved``) and ``cross remove``."""
    what = "takes part" if approved else "taken off"
    print(f"device {device_id} {what}; devices: {', '.join(map(str, devices))}")


def print_notices(notices: Sequence[str]) -> None:
    """The notices of a private command, on stderr."""
    for notice in notices:
        print(f"warning: {notice}", file=sys.stderr)


async def run_private(client: PrivateClient, args: argparse.Namespace) -> int:
    """One of :data:`COMMANDS` on the private transport."""
    command = args.command
    check_transport(PRIVATE, command, getattr(args, "cross_command", None))
    if command == "link-account":
        return await _link_account(client, args)
    async with client.session() as session:
        if command == "profile" and args.profile_command == "set":
            print_profile(await set_private_profile(session, args.name, args.about,
                                                    args.avatar), True)
        elif command == "profile":
            print_profile(await private_profile(session, args.name), True)
        elif command == "status" and args.status_command == "post":
            await session.post_status(args.text)
        elif command == "status":
            print_statuses(private_statuses(session))
        elif command == "unlink-account":
            print_unlinked_account(await session.unlink_account())
        elif command == "sharing":
            print_sharing(await session.sharing_log())
        else:
            await _private_cross(session, args)
        print_notices(session.notices)
    return 0


async def _private_cross(session: PrivateSession, args: argparse.Namespace) -> None:
    action = args.cross_command
    if action in ("on", "off"):
        await session.cross_set(action == "on")
        enabled = action == "on"
    else:
        enabled = await private_cross_enabled(session)
    print_cross_status(PRIVATE, None, enabled, session.state.account or "")


async def _link_account(client: PrivateClient, args: argparse.Namespace) -> int:
    """``link-account --social-home DIR``: both consenting keys sign, then the relay shares.
    A daemon serving DIR holds its social login: refused (no two processes write a home)."""
    with command_guard(args.social_home) as served:
        if served:
            raise ClientError(f"a daemon serves {args.social_home}, which holds the social "
                              "login: stop it first, or link through a daemon serving both "
                              "accounts in one home")
        social_state = SocialState(args.social_home, os.environ.get("E2E_PASSPHRASE") or None)
        try:
            if social_state.account is None:
                raise ClientError(f"{args.social_home} is not logged in to a social account")
            social = SocialClient(social_state, *args.social, tls=tls_from_args(args),
                                  request_timeout=args.timeout)
            async with social.session():  # its device key is published
                pass
            async with client.session() as session:
                account, report = await link_accounts(session, social_state)
        finally:
            social_state.close()
    print_linked_account(client.state.account or "", account, report)
    return 0


async def run_social(session: SocialSession, args: argparse.Namespace) -> None:
    """One of :data:`COMMANDS` on the social transport."""
    command = args.command
    check_transport(SOCIAL, command)
    if command == "profile" and args.profile_command == "set":
        print_profile(await session.set_profile(args.name, args.about, args.avatar), False)
    elif command == "profile":
        print_profile(await social_profile(session, args.name), False)
    elif command == "status" and args.status_command == "post":
        await session.post_status(args.text)
    elif command == "status":
        print_statuses(await social_statuses(session))
    elif command == "linked":
        print_linked(await session.linked_account())
    else:
        await _social_cross(session, args, session.state.account or "")


async def _social_cross(session: SocialSession, args: argparse.Namespace,
                        account: str) -> None:
    action = args.cross_command
    if action == "on":
        status = await session.cross_on()
        print_cross_status(SOCIAL, status, cross_on_enabled(status), account)
    elif action == "off":
        await session.cross_off()
        print_cross_status(SOCIAL, None, False, account)
    elif action == "approve":
        print_cross_devices(args.device_id, await session.cross_approve(args.device_id,
                                                                        args.key), True)
    elif action == "remove":
        print_cross_devices(args.device_id, await session.cross_remove(args.device_id), False)
    else:
        print_cross_report(account, *await session.cross_report())

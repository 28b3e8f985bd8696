"""``e2e-chat`` commands between the transports, on either: ``profile``, ``status``,
``link-account``, ``unlink-account``, ``sharing``, ``linked`` and ``cross``.

:func:`run_private` and :func:`run_social` run one of them on a session of that transport; the
``print_*`` functions are their output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence

from e2e_proto.account_link import SharedRecord
from e2e_proto.capabilities import PRIVATE, SOCIAL

from ..core.errors import ClientError
from ..core.files import FileRecord
from ..private.account_link import SharingReport
from ..private.session import PrivateClient, PrivateSession
from ..social.cross import CrossStatus
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialState
from .common import tls_from_args

COMMANDS = ("profile", "status", "link-account", "unlink-account", "sharing", "linked", "cross")
PRIVATE_ONLY = ("link-account", "unlink-account", "sharing")
SOCIAL_ONLY = ("linked",)


def _when(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "never"
    return datetime.datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M")


def print_profile(account: str, name: str, about: str, avatar: FileRecord | None,
                  end_to_end: bool) -> None:
    """The output of ``profile show`` (and ``profile set``)."""
    print(f"{account}: {name or '(no display name)'}")
    if about:
        print(f"  about: {about}")
    if avatar is not None:
        where = avatar.path or f"not saved ({avatar.error or 'not downloaded'})"
        note = "" if end_to_end else " (not end-to-end encrypted)"
        print(f"  avatar: {where}{note}")


def print_statuses(statuses: Sequence[tuple[str, str, int]]) -> None:
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


async def run_private(client: PrivateClient, args: argparse.Namespace) -> int:
    """One of :data:`COMMANDS` on the private transport."""
    command = args.command
    if command in SOCIAL_ONLY:
        raise ClientError(f"'{command}' is for the social transport (--transport social)")
    if command == "link-account":
        return await _link_account(client, args)
    async with client.session() as session:
        if command == "profile" and args.profile_command == "set":
            known = await session.set_profile(args.name, args.about, args.avatar)
            record = (None if known.avatar is None
                      else session.state.files.get(known.avatar))
            print_profile(known.account, known.profile.name, known.profile.about, record, True)
        elif command == "profile":
            account = args.name or session.state.account or ""
            known, avatar = await session.profile_of(account)
            if known is None:
                raise ClientError(f"no profile known for {account!r} (it reaches you once "
                                  "you are contacts)")
            print_profile(account, known.profile.name, known.profile.about, avatar, True)
        elif command == "status" and args.status_command == "post":
            await session.post_status(args.text)
        elif command == "status":
            print_statuses([(s.account, s.status.text, s.status.posted_ms)
                            for s in session.statuses()])
        elif command == "unlink-account":
            social = await session.unlink_account()
            print(f"unlinked from {social}@{SOCIAL}; sharing stopped and the social server "
                  "deletes what it received")
        elif command == "sharing":
            print_sharing(await session.sharing_log())
        else:
            await _private_cross(session, args)
        _notices(session.notices)
    return 0


async def _private_cross(session: PrivateSession, args: argparse.Namespace) -> None:
    action = args.cross_command
    if action in ("approve", "remove"):
        raise ClientError(f"'cross {action}' is for the social transport: a private account "
                          "already has its devices in its signed device list")
    if action in ("on", "off"):
        await session.cross_set(action == "on")
        enabled = action == "on"
    else:
        enabled = (await session.sharing_log(1)).cross
    print_cross_status(PRIVATE, None, enabled, session.state.account or "")


async def _link_account(client: PrivateClient, args: argparse.Namespace) -> int:
    """``link-account --social-home DIR``: both consenting keys sign, then the relay shares."""
    social_state = SocialState(args.social_home, os.environ.get("E2E_PASSPHRASE") or None)
    try:
        if social_state.account is None:
            raise ClientError(f"{args.social_home} is not logged in to a social account")
        social = SocialClient(social_state, *args.social, tls=tls_from_args(args),
                              request_timeout=args.timeout)
        async with social.session():  # its device key is published
            pass
        account, device = social_state.account, social_state.device_id
        async with client.session() as session:
            await session.link_account(account, device, social_state.identity())
            report = await session.sharing_log(5)
    finally:
        social_state.close()
    print(f"linked {client.state.account}@{PRIVATE} to {account}@{SOCIAL} (both signed). "
          "Shared with the social server, and nothing else: your account name, display name, "
          "about, status updates, device names and last seen.")
    print_sharing(report)
    return 0


async def run_social(session: SocialSession, args: argparse.Namespace) -> None:
    """One of :data:`COMMANDS` on the social transport."""
    command = args.command
    account = session.state.account or ""
    if command in PRIVATE_ONLY:
        raise ClientError(f"'{command}' runs on the private transport (without --transport "
                          "social), on the private account's primary device")
    if command == "profile" and args.profile_command == "set":
        shown = await session.set_profile(args.name, args.about, args.avatar)
        print_profile(shown.account, shown.profile.name, shown.profile.about, shown.avatar,
                      False)
    elif command == "profile":
        shown = await session.profile_of(args.name or account)
        print_profile(shown.account, shown.profile.name, shown.profile.about, shown.avatar,
                      False)
    elif command == "status" and args.status_command == "post":
        await session.post_status(args.text)
    elif command == "status":
        print_statuses([(a, s.text, s.posted_ms) for a, s in await session.statuses()])
    elif command == "linked":
        linked = await session.linked_account()
        if linked is None:
            print("not linked to a private account")
            return
        private_account, linked_at, record = linked
        print(f"linked to {private_account}@{PRIVATE} since {_when(linked_at * 1000)}")
        for line in [] if record is None else record_lines(record):
            print(f"  {line}")
    else:
        await _social_cross(session, args, account)


async def _social_cross(session: SocialSession, args: argparse.Namespace,
                        account: str) -> None:
    action = args.cross_command
    if action == "on":
        status = await session.cross_on()
        print_cross_status(SOCIAL, status, status.outcome != "joined", account)
    elif action == "off":
        await session.cross_off()
        print_cross_status(SOCIAL, None, False, account)
    elif action == "approve":
        devices = await session.cross_approve(args.device_id, args.key)
        print(f"device {args.device_id} takes part; devices: {', '.join(map(str, devices))}")
    elif action == "remove":
        devices = await session.cross_remove(args.device_id)
        print(f"device {args.device_id} taken off; devices: {', '.join(map(str, devices))}")
    else:
        enabled, devices, joins = await session.cross_report()
        print_cross_status(SOCIAL, CrossStatus("listed", b"", devices), enabled, account)
        for device_id, key in joins:
            print(f"device {device_id} asks to join (key {key.hex()[:16]}...): "
                  f"'cross approve {device_id} KEY' after comparing its key")


def _notices(notices: list[str]) -> None:
    for notice in notices:
        print(f"warning: {notice}", file=sys.stderr)

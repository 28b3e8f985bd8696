"""``e2e-chat --transport social``: the command-line client of the social transport.

:func:`run_social` takes the arguments :func:`client.cli.main.build_parser` parsed and returns
the exit code: 0 on success, 1 with one line ``e2e-chat: ...`` on stderr for any user error (no
tracebacks). The device's state is ``HOME/social.db``; passwords come from ``E2E_PASSWORD`` or a
prompt. Message ids are the server's, printed as decimal strings.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from e2e_proto.address import is_foreign
from e2e_proto.capabilities import SOCIAL
from e2e_proto.social_api import parse_message_id

from ..core.calls import CallInfo
from ..core.errors import ClientError
from ..social.own_devices import OwnDevice
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialEvent, SocialState, StoredMessage
from . import between
from .calls import CallPlan, call_command, ringing_for_me, show_on_stderr
from .common import (
    chat,
    file_json,
    file_line,
    human_size,
    only_leaf,
    print_fetched,
    print_whoami,
    receive_command,
    run_with_state,
    tls_from_args,
)
from .private import VerifyReport
from .private import print_verify as print_verify_number


def read_password(prompt: str = "password: ") -> str:
    """The password from env ``E2E_PASSWORD``, else from a prompt."""
    password = os.environ.get("E2E_PASSWORD")
    if password is None:
        try:
            password = getpass.getpass(prompt)
        except EOFError:
            raise ClientError("no password: set E2E_PASSWORD or type it at the prompt") from None
    if not password:
        raise ClientError("the password is empty")
    return password


def format_event(event: SocialEvent, me: str) -> str:
    """One human-readable line for an event."""
    where = "" if event.conversation == event.sender else f" in {event.conversation}"
    ref = f"[{event.message}]"
    if event.kind == "message":
        text = event.text
        if event.file is not None:
            caption = event.file.media.caption
            text = file_line(event.file) + (f" {caption}" if caption else "") + (
                "" if event.secret else " (not end-to-end encrypted)")
        if event.sender == me:
            return f"{ref} you -> {event.conversation}: {text}"
        return f"{ref} {event.sender}{where}: {text}"
    if event.kind == "reaction":
        if event.emoji is None:
            return f"{event.sender} removed the reaction to {ref}{where}"
        return f"{event.sender} reacted {event.emoji} to {ref}{where}"
    if event.kind in ("pin", "unpin"):
        return f"{event.sender} {event.kind}ned {ref}{where}"
    if event.kind == "secret":
        return f"{event.sender} made your conversation secret (end-to-end encrypted)"
    if event.kind == "group":
        return f"{event.sender} updated the group {event.conversation}"
    if event.kind == "call":
        return f"{event.sender}{where}: {event.text}"
    return f"{event.sender}: [{event.kind}]"


def event_json(event: SocialEvent) -> str:
    """The ``--json`` form of an event (``id`` is the message id, a decimal string)."""
    record: dict[str, object] = {
        "kind": event.kind, "conversation": event.conversation, "from": event.sender,
        "device": event.device, "id": None if event.message is None else str(event.message),
        "ts": event.ts}
    if event.kind in ("message", "call"):
        record.update(text=event.text, secret=event.secret)
        if event.file is not None:
            record.update(file_json(event.file))
    elif event.kind == "reaction":
        record["emoji"] = event.emoji
    return json.dumps(record, ensure_ascii=False)


def format_stored(message: StoredMessage, with_conversation: bool = False) -> str:
    """``[ID] SENDER: TEXT`` with a pin mark and reactions (``[ID] (CONVERSATION) ...``)."""
    text = message.text if message.text is not None else "[secret message not on this device]"
    extra = "".join(f" {emoji}{account}" for account, emoji in message.reactions)
    pin = " (pinned)" if message.pinned else ""
    where = f"({message.conversation}) " if with_conversation else ""
    return f"[{message.id}] {where}{message.sender}: {text}{pin}{extra}"


def printer(as_json: bool, me: str) -> Callable[[SocialEvent], None]:
    """What ``recv`` and ``chat`` show for each event (``--json``: :func:`event_json`)."""

    def show(event: SocialEvent) -> None:
        if event.warning is not None:
            print(f"warning: {event.warning}", file=sys.stderr, flush=True)
        else:
            print(event_json(event) if as_json else format_event(event, me), flush=True)
    return show


def message_id_arg(text: str) -> int:
    """A message id as the command line gives it (a decimal string); :class:`ClientError`."""
    try:
        return parse_message_id(text)
    except ValueError as exc:
        raise ClientError(str(exc)) from None


async def _run(args: argparse.Namespace, client: SocialClient) -> int:
    command = args.command
    state = client.state
    if command in ("register", "login"):
        password = read_password()
        async with client.connect() as session:
            if command == "register":
                device_id = await session.register(args.name, password)
                print(f"registered {args.name} (device {device_id})")
            else:
                device_id = await session.login(args.name, password)
                print(f"logged in as {args.name} (device {device_id})")
        return 0
    if command == "whoami":
        if state.account is None:
            raise ClientError("not logged in: run 'e2e-chat --transport social login NAME'")
        print_whoami(state.account, state.device_id)
        return 0
    if command == "recv":
        return await receive_command(client.session, args.wait,
                                     printer(args.json, state.account or ""))
    if command == "chat":
        return await _chat(client, args.name or args.group)
    if command == "call":
        me = state.account or ""
        return await call_command(client.session, args, SOCIAL,
                                  call_plan(args.name, args.group),
                                  show_on_stderr(lambda event: format_event(event, me)))
    async with client.session() as session:
        return await _one_request(args, session)


async def _one_request(args: argparse.Namespace, session: SocialSession) -> int:
    command = args.command
    if command == "send":
        print(await session.send_text(args.name, args.text))
    elif command == "send-file":
        await _send_file(session, args)
    elif command == "fetch-file":
        record = await session.fetch_file(args.message_id)
        print_fetched(record.path, record.error)
    elif command == "group":
        await _group(args, session)
    elif command == "react":
        await session.react(message_id_arg(args.message_id), args.emoji)
    elif command == "unreact":
        check_unreacted(args.message_id, await session.unreact(message_id_arg(args.message_id)))
    elif command == "pin":
        await session.pin(message_id_arg(args.message_id))
    elif command == "unpin":
        check_unpinned(args.message_id, await session.unpin(message_id_arg(args.message_id)))
    elif command == "pins":
        print_messages(await session.pins(args.name))
    elif command == "history":
        before = None if args.before is None else message_id_arg(args.before)
        print_history(args.name, *await session.history(args.name, before))
    elif command == "search":
        print_messages(await session.search(args.text), with_conversation=True)
    elif command == "secret":
        print_secret(args.name, await session.make_secret(args.name))
    elif command == "verify" and is_foreign(args.name):
        print_verify_number(args.name, await cross_verify(session, args.name, args.accept))
    elif command == "verify":
        report = await session.device_report(args.name)
        print_verify(args.name, report, await session.accept_devices(args.name)
                     if args.accept else None)
    elif command in between.COMMANDS:
        await between.run_social(session, args)
    elif command == "devices":
        print_devices(await session.own_devices())
    elif command == "unlink":
        print_revoked(await session.revoke_device(args.device_id), session.state.device_id)
    elif command == "logout":
        await session.logout()
        print_logged_out(session.state.account or "")
    else:
        raise unavailable(command)
    return 0


def unavailable(command: str) -> ClientError:
    """The refusal of a command the social transport does not have."""
    return ClientError(f"'{command}' is not available on the social transport")


def check_unreacted(message_id: str, changed: bool) -> None:
    """``unreact``'s result: an error when there was no reaction to remove."""
    if not changed:
        raise ClientError(f"you have no reaction on message {message_id}")


def check_unpinned(message_id: str, changed: bool) -> None:
    """``unpin``'s result: an error when the message was not pinned."""
    if not changed:
        raise ClientError(f"message {message_id} is not pinned")


def print_group_created(name: str, members: int) -> None:
    """The output of ``group create``."""
    print(f"created group {name} with {members} members")


def print_messages(messages: Sequence[StoredMessage], with_conversation: bool = False) -> None:
    """The output of ``pins`` and ``search``: one :func:`format_stored` line each."""
    for message in messages:
        print(format_stored(message, with_conversation))


def print_history(name: str, messages: Sequence[StoredMessage], more: bool) -> None:
    """The output of ``history``: a hint when older messages exist, then the messages."""
    if more and messages:
        print(f"(older messages: history {name} --before {messages[0].id})")
    print_messages(messages)


def print_secret(name: str, changed: bool) -> None:
    """The output of ``secret``."""
    print(f"the conversation with {name} is {'now' if changed else 'already'} "
          "end-to-end encrypted")


def print_verify(name: str, report: Sequence[tuple[int, bytes, str]],
                 accepted: tuple[int, int] | None) -> None:
    """The output of ``verify``: NAME's devices with their keys and whether they are accepted,
    then, with ``--accept``, how many devices were accepted and held messages released."""
    for device_id, key, status in report:
        print(f"{device_id}  key {key[:8].hex()}  {status}")
    if accepted is not None:
        count, held = accepted
        shown = f"; {held} held message(s) are shown by the next recv" if held else ""
        print(f"accepted the {count} device(s) of {name}{shown}")


async def cross_verify(session: SocialSession, name: str, accept: bool) -> VerifyReport:
    """``verify NAME@private``: NAME's key and device list fetched and checked again; whether
    its key changed (not accepted before), the safety number both sides see (printed as the
    private transport's ``verify`` prints it), and with ``accept`` how many held messages the
    acceptance released."""
    await session.cross_device_list(name, refresh=True)
    changed = session.state.cross_contacts.key_changed(name)
    released = await session.accept_cross_key(name) if accept else None
    return VerifyReport(changed, session.cross_safety_number(name), released)


def print_devices(devices: Sequence[OwnDevice]) -> None:
    """The output of ``devices``: one device a line, its key, login, last sight and expiry."""
    for device in devices:
        this = "  (this device)" if device.current else ""
        shown = "no key yet" if device.key is None else f"key {device.key[:8].hex()}"
        print(f"{device.device_id}  {shown}  logged in {_when(device.created)}  last seen "
              f"{_when(device.last_seen)}  expires {_when(device.expires)}{this}")


def print_revoked(device_id: int, this_device: int | None) -> None:
    """The output of ``unlink ID`` on the social transport."""
    if device_id == this_device:
        print(f"revoked device {device_id} (this device): logged out")
    else:
        print(f"revoked device {device_id}: its login no longer works")


def print_logged_out(account: str) -> None:
    """The output of ``logout``."""
    print(f"logged out: this device's login was revoked; run 'e2e-chat --transport social "
          f"login {account}' to come back as a new device")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


async def _send_file(session: SocialSession, args: argparse.Namespace) -> None:
    """``send-file`` (and ``group send-file``): the message id, and on stderr what was sent and
    whether end to end."""
    sent = await session.send_file(args.name, args.path, args.caption, args.mime)
    print_file_sent(args.name, sent.message, sent.file.media.name, sent.file.media.size,
                    sent.end_to_end)


def print_file_sent(to: str, message_id: int, name: str | None, size: int,
                    end_to_end: bool) -> None:
    """The output of ``send-file``: the message id; on stderr what was sent to ``to`` and
    whether end to end (with a note when not)."""
    if not end_to_end:
        print(f"note: the conversation with {to} is not end-to-end encrypted: the "
              "server can read this file's key and so the file (run 'secret "
              f"{to}' first to encrypt files end to end)", file=sys.stderr)
    print(message_id)
    print(f"sent {name} ({human_size(size)}) to "
          f"{to}" + (", end-to-end encrypted" if end_to_end else
                     ", not end-to-end encrypted"), file=sys.stderr)


async def _group(args: argparse.Namespace, session: SocialSession) -> None:
    """One ``group`` action on the social server's groups (no admins there: any member may)."""
    action, name = args.group_command, args.name
    if action == "send":
        print(await session.send_text(name, args.text))
    elif action == "send-file":
        await _send_file(session, args)
    elif action == "create":
        info = await session.group_create(name, args.members)
        print_group_created(name, len(info["members"]))
    elif action == "add":
        info = await session.group_add(name, args.members)
        print_group_size(name, len(info["members"]))
    elif action == "remove":
        await session.group_remove(name, args.member)
        print_group_removed(name, args.member)
    elif action == "leave":
        await session.group_leave(name)
        print_group_left(name)
    elif action == "rename":
        await session.group_rename(name, args.new_name)
        print_group_renamed(name, args.new_name)
    elif action == "members":
        print_group_members(group_members(name, await session.conversation(name)))
    else:
        raise no_admins()


def no_admins() -> ClientError:
    """The refusal of ``group admin`` on the social transport."""
    return ClientError("social groups have no admins: every member may add, remove and rename")


def group_members(name: str, info: dict[str, Any]) -> list[str]:
    """The members of the group ``name`` from its conversation ``info``; :class:`ClientError`
    when ``name`` is not a group."""
    if info.get("kind") != "group":
        raise ClientError(f"{name!r} is not a group")
    return list(info["members"])


def print_group_size(name: str, members: int) -> None:
    """The output of ``group add``."""
    print(f"{name} has {members} members")


def print_group_removed(name: str, member: str) -> None:
    """The output of ``group remove``."""
    print(f"removed {member} from {name}")


def print_group_left(name: str) -> None:
    """The output of ``group leave``."""
    print(f"left {name}")


def print_group_renamed(name: str, new_name: str) -> None:
    """The output of ``group rename``."""
    print(f"renamed {name} to {new_name}")


def print_group_members(members: Sequence[str]) -> None:
    """The output of ``group members``: one member a line."""
    for member in members:
        print(member)


def call_plan(name: str | None, group: str | None, call_id: bytes | None = None
              ) -> Callable[[SocialSession, list[CallInfo]], Awaitable[CallPlan]]:
    """With ``name``: join NAME's call to this account, else start one in the conversation;
    with ``group``: join the group's running call, else start one; with neither: join the
    call ringing here (``--answer``; ``call_id`` picks which)."""

    async def plan(session: SocialSession, ringing: list[CallInfo]) -> CallPlan:
        if group is not None:
            running = [c for c in ringing if c.group == group]
            return CallPlan(running[-1] if running else None,
                            lambda: session.call_start(group))
        if name is not None:
            calling = [c for c in ringing if c.group is None and c.caller.account == name]
            return CallPlan(calling[-1] if calling else None,
                            lambda: session.call_start(name), {"peer": name})
        info = ringing_for_me(ringing, call_id)
        return CallPlan(info, options={} if info.group else {"peer": info.caller.account})

    return plan


async def _chat(client: SocialClient, name: str) -> int:
    return await chat(client.session, name, printer(False, client.state.account or ""),
                      lambda session: session.conversation(name))


def run_social(args: argparse.Namespace) -> int:
    """Run one ``e2e-chat --transport social`` command; the process exit code."""

    def command(state: SocialState) -> int:
        try:
            client = SocialClient(state, *args.social, tls=tls_from_args(args),
                                  request_timeout=args.timeout)
            return trio.run(_run, args, client)
        except BaseExceptionGroup as group:  # an error inside chat's nursery: show the leaf
            raise only_leaf(group) from None

    return run_with_state(args.home, SocialState, command, "social server", unwrap=only_leaf)

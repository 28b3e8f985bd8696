"""``e2e-chat`` on the private transport (the default): the commands against the relay.

:func:`run_private` takes the arguments :func:`client.cli.main.build_parser` parsed and returns
the exit code; the device's state is ``HOME/state.db``. Message ids are payload ids, printed as
hex (``recv --json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from e2e_proto.address import is_foreign, qualify
from e2e_proto.capabilities import PRIVATE, require
from e2e_proto.fingerprint import format_safety_number, safety_number

from ..core.calls import CallInfo
from ..core.connection import ConnectionLost
from ..core.errors import ClientError
from ..private.received import Received
from ..private.session import PrivateClient, PrivateSession
from ..private.state import ClientState
from . import between
from .calls import CallPlan, call_command, ringing_for_me, show_on_stderr
from .common import (
    chat,
    file_json,
    file_line,
    human_size,
    print_fetched,
    print_whoami,
    receive_command,
    run_with_state,
    tls_from_args,
)


def format_message(message: Received) -> str:
    """``NAME: TEXT``, or ``you -> NAME: TEXT`` for a message sent from another own device;
    ``[GROUP] NAME: TEXT`` (``[GROUP] you: TEXT``) in a group.

    A file shows as ``[file NAME, SIZE, MIME] PATH`` (and its caption).
    """
    text = message.text if message.text is not None else f"[unsupported {message.kind!r}]"
    if message.file is not None:
        text = file_line(message.file) + (f" {message.text}" if message.text else "")
    if message.group is not None:
        return f"[{message.group}] {'you' if message.outgoing else message.sender}: {text}"
    if message.outgoing:
        return f"you -> {message.peer}: {text}"
    return f"{message.sender}: {text}"


def message_json(message: Received) -> str:
    """The ``--json`` form of a message (a file's adds ``path``, ``size``, ``mime``, ...)."""
    record: dict[str, object] = {
        "from": message.sender, "device": message.sender_device, "id": message.id.hex(),
        "ts": message.ts, "kind": message.kind, "text": message.text,
        "to": message.peer if message.outgoing and not message.group else None,
        "group": message.group}
    if message.file is not None:
        record.update(file_json(message.file))
    return json.dumps(record)


def printer(as_json: bool) -> Callable[[Received], None]:
    """What ``recv`` and ``chat`` show for each message (``--json``: :func:`message_json`)."""

    def show(message: Received) -> None:
        if message.warning is not None:
            print(f"warning: {message.warning}", file=sys.stderr, flush=True)
        else:
            print(message_json(message) if as_json else format_message(message), flush=True)
    return show


def check_command(command: str) -> None:
    """Refuse a command the private transport does not have, in the capability table's words."""
    if command in ("pin", "unpin", "pins"):
        require(PRIVATE, "pinning")
    if command in ("history", "search"):
        require(PRIVATE, "server_history")
    if command in ("login", "logout", "secret"):
        raise ClientError(f"'{command}' is for the social transport (--transport social); "
                          "the private transport is always end-to-end encrypted, with "
                          "one account per device home")


async def _run(args: argparse.Namespace, state: ClientState) -> int:
    client = PrivateClient(state, *args.relay, tls=tls_from_args(args),
                           request_timeout=args.timeout)
    command = args.command
    check_command(command)
    if command == "whoami":
        if state.account is None:
            raise ClientError("not registered: run 'e2e-chat register NAME' first")
        print_whoami(state.account, state.device_id)
        return 0
    if command == "register":
        async with client.connect() as session:
            await session.register(args.name)
        print(f"registered {args.name} (device 0)")
        return 0
    if command == "send":
        async with client.session() as session:
            await session.send_text(args.name, args.text)
        return 0
    if command == "recv":
        return await receive_command(client.session, args.wait, printer(args.json))
    if command == "send-file":
        try:
            async with client.session() as session:
                sent = await session.send_file(args.name, args.path, args.caption, args.mime)
        except ConnectionLost as exc:
            raise upload_lost(exc) from None
        assert sent.file is not None
        print_file_sent(sent.file.media.name, sent.file.media.size, args.name)
        return 0
    if command == "fetch-file":
        async with client.session() as session:
            record = await session.fetch_file(args.message_id)
        print_fetched(record.path, record.error)
        return 0
    if command == "verify":
        async with client.session() as session:
            await session.device_list(args.name, refresh=True)
        print_verify(args.name, verify_report(state, args.name, args.accept))
        return 0
    if command == "devices":
        async with client.session() as session:
            print_devices(await session.device_details(), state.device_id)
        return 0
    if command == "link":
        return await _link(client, args)
    if command == "approve":
        async with client.session() as session:
            print_approved(await session.approve(args.code))
        return 0
    if command == "unlink":
        async with client.session() as session:
            await session.unlink(args.device_id)
        print_unlinked(args.device_id)
        return 0
    if command in ("react", "unreact"):
        async with client.session() as session:
            await session.react(args.message_id, args.emoji if command == "react" else None)
        return 0
    if command == "chat" and args.group is not None:
        return await _group_chat(client, args.group)
    if command == "chat":
        return await _chat(client, args.name)
    if command == "call":
        return await call_command(client.session, args, PRIVATE,
                                  call_plan(args.name, args.group),
                                  show_on_stderr(format_message))
    if command in between.COMMANDS:
        return await between.run_private(client, args)
    if command == "group":
        async with client.session() as session:
            await session.catch_up()
            await session.deliver_pending_updates()
            show = await _group(session, args)
        show()
        return 0
    raise AssertionError(command)


async def _group(session: PrivateSession, args: argparse.Namespace) -> Callable[[], None]:
    """Run one ``group`` action; what prints its output (once the session is closed)."""
    action, name = args.group_command, args.name
    if action == "create":
        state = await session.group_create(name, args.members)
        return partial(print_group_created, name, len(state.members))
    if action == "add":
        state = await session.group_add(name, args.members)
        return partial(print_group_size, name, len(state.members))
    if action == "remove":
        await session.group_remove(name, args.member)
        return partial(print_group_removed, name, args.member)
    if action == "leave":
        await session.group_leave(name)
        return partial(print_group_left, name)
    if action == "rename":
        await session.group_rename(name, args.new_name)
        return partial(print_group_renamed, name, args.new_name)
    if action == "admin":
        await session.group_admin(name, args.member, not args.revoke)
        return partial(print_group_admin, name, args.member, not args.revoke)
    if action == "send":
        await session.group_send_text(name, args.text)
        return _print_nothing
    if action == "send-file":
        sent = await session.group_send_file(name, args.path, args.caption, args.mime)
        assert sent.file is not None
        return partial(print_file_sent, sent.file.media.name, sent.file.media.size,
                       group_target(name))
    state = session.find_group(name).state
    return partial(print_group_members, state.members,
                   [m for m in state.members if state.is_admin(m)])


def upload_lost(error: ConnectionLost) -> ClientError:
    """``send-file``'s error when the connection is lost: the same command resumes."""
    return ClientError(f"{error}; run the same send-file again to resume the upload where the "
                       "relay's copy ends")


def _print_nothing() -> None:
    """The output of commands that print nothing on success."""


def print_file_sent(name: str | None, size: int, to: str) -> None:
    """The output of ``send-file`` and ``group send-file`` (``to``: the account, or
    :func:`group_target`)."""
    print(f"sent {name} ({human_size(size)}) to {to}, end-to-end encrypted")


def group_target(name: str) -> str:
    """How ``group send-file`` names the group it sent to."""
    return f"the group {name!r}"


def print_group_created(name: str, members: int) -> None:
    """The output of ``group create``."""
    print(f"created group {name!r} with {members} members")


def print_group_size(name: str, members: int) -> None:
    """The output of ``group add``."""
    print(f"{name!r} has {members} members")


def print_group_removed(name: str, member: str) -> None:
    """The output of ``group remove``."""
    print(f"removed {member} from {name!r}")


def print_group_left(name: str) -> None:
    """The output of ``group leave``."""
    print(f"left {name!r}")


def print_group_renamed(name: str, new_name: str) -> None:
    """The output of ``group rename``."""
    print(f"renamed {name!r} to {new_name!r}")


def print_group_admin(name: str, member: str, admin: bool) -> None:
    """The output of ``group admin`` (``admin`` False: ``--revoke``)."""
    print(f"{member} is {'' if admin else 'no longer '}an admin of {name!r}")


def print_group_members(members: Sequence[str], admins: Sequence[str]) -> None:
    """The output of ``group members``: one member a line, admins marked."""
    marked = set(admins)
    for member in members:
        print(f"{member} (admin)" if member in marked else member)


def call_plan(name: str | None, group: str | None, call_id: bytes | None = None
              ) -> Callable[[PrivateSession, list[CallInfo]], Awaitable[CallPlan]]:
    """With ``name``: join NAME's call to this account, else start one; with ``group``: join
    the group's running call, else start one; with neither: join the call ringing here
    (``--answer``; ``call_id`` picks which)."""

    async def plan(session: PrivateSession, ringing: list[CallInfo]) -> CallPlan:
        if group is not None:
            group_id = session.find_group(group).state.group_id
            running = [c for c in ringing if c.group == group_id]
            return CallPlan(running[-1] if running else None,
                            lambda: session.call_start(group=group), {"group_id": group_id})
        if name is not None:
            calling = [c for c in ringing if c.group is None and c.caller.account == name]
            return CallPlan(calling[-1] if calling else None,
                            lambda: session.call_start(name), {"peer": name})
        info = ringing_for_me(ringing, call_id)
        options = ({"group_id": info.group} if isinstance(info.group, bytes)
                   else {"peer": info.caller.account})
        return CallPlan(info, options=options)

    return plan


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


async def _link(client: PrivateClient, args: argparse.Namespace) -> int:
    name = args.device_name or socket.gethostname()[:64] or "device"
    linked = False
    with trio.move_on_after(args.wait) as scope:
        async with client.connect() as session:
            device_id = await session.resume_link()  # approved before, proof not yet seen
            if device_id is None:
                code = await session.request_link(args.name, name)
                print(f"link code: {code}", flush=True)
                print(f"on the primary device run: e2e-chat approve {code}", flush=True)
                device_id = await session.wait_for_link()
            await session.ensure_prekeys()
            print(f"linked as {args.name} device {device_id}", flush=True)
            linked = True
            # What is queued is shown, then the command ends (not bounded by --wait any more).
            scope.deadline = trio.current_time() + args.timeout
            await session.receive(printer(False))
    if scope.cancelled_caught and not linked:
        raise ClientError(f"no approval within {args.wait:g} seconds; run link again")
    return 0


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify NAME [--accept]`` shows: whether NAME's account key changed (not accepted
    before this command), the safety number, and, with ``--accept``, how many held messages the
    acceptance released (None without ``--accept``)."""

    key_changed: bool
    safety_number: str
    released: int | None


def verify_report(state: ClientState, name: str, accept: bool) -> VerifyReport:
    """The safety number with ``name`` (its verified keys must be known); ``accept`` trusts its
    current account key and releases the messages held until then."""
    own, other = state.contact(state.account or ""), state.contact(name)
    if own is None or other is None:
        raise ClientError(f"no verified keys for {name!r}")
    key_changed = state.key_changed(name)
    me = state.account or ""
    if is_foreign(name):  # across the transports both sides name both accounts in full
        me = qualify(me, PRIVATE)
    number = format_safety_number(safety_number(me, own[0], name, other[0]))
    return VerifyReport(key_changed, number, state.accept_key(name) if accept else None)


def print_verify(name: str, report: VerifyReport) -> None:
    """The output of ``verify``: a warning on stderr after a key change, the number, and what
    ``--accept`` did."""
    if report.key_changed:
        print(f"warning: the account key of {name} changed since you last talked",
              file=sys.stderr)
    print(f"safety number with {name}:")
    print(report.safety_number)
    if report.released is not None:
        held = report.released
        shown = f"; {held} held message(s) are shown by the next recv" if held else ""
        print(f"accepted {name}'s current account key{shown}")


def print_devices(details: Sequence[Sequence[Any]], this_device: int) -> None:
    """The output of ``devices``: ``[id, name, linked_at, last_seen]`` rows as a table."""
    print(f"{'id':>3}  {'name':<16}  {'linked at':<19}  last seen")
    for device_id, name, linked_at, last_seen in details:
        this = "  (this device)" if device_id == this_device else ""
        print(f"{device_id:>3}  {name:<16}  {_when(linked_at):<19}  {_when(last_seen)}{this}")


def print_approved(device_id: int) -> None:
    """The output of ``approve``."""
    print(f"linked device {device_id}; it was sent the contact list")


def print_unlinked(device_id: int) -> None:
    """The output of ``unlink``."""
    print(f"unlinked device {device_id}; it receives nothing new")


async def _group_chat(client: PrivateClient, name: str) -> int:
    async def prepare(session: PrivateSession) -> None:
        await session.catch_up()
        session.find_group(name)

    async def send(session: PrivateSession, text: str) -> None:
        await session.group_send_text(name, text)

    return await chat(client.session, name, printer(False), prepare, send)


async def _chat(client: PrivateClient, name: str) -> int:
    return await chat(client.session, name, printer(False),
                      lambda session: session.device_list(name))


def run_private(args: argparse.Namespace) -> int:
    """Run one ``e2e-chat`` command on the private transport; the process exit code."""
    return run_with_state(args.home, ClientState, lambda state: trio.run(_run, args, state),
                          "relay")

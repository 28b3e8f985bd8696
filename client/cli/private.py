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
from collections.abc import Callable

import trio

from e2e_proto.capabilities import PRIVATE, require
from e2e_proto.fingerprint import format_safety_number, safety_number

from ..core.connection import ConnectionLost
from ..core.errors import ClientError
from ..private.received import Received
from ..private.session import PrivateClient, PrivateSession
from ..private.state import ClientState
from .common import (
    chat,
    file_json,
    file_line,
    human_size,
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


def _printer(as_json: bool) -> Callable[[Received], None]:
    def show(message: Received) -> None:
        if message.warning is not None:
            print(f"warning: {message.warning}", file=sys.stderr, flush=True)
        else:
            print(message_json(message) if as_json else format_message(message), flush=True)
    return show


async def _run(args: argparse.Namespace, state: ClientState) -> int:
    client = PrivateClient(state, *args.relay, tls=tls_from_args(args),
                           request_timeout=args.timeout)
    command = args.command
    if command in ("pin", "unpin", "pins"):
        require(PRIVATE, "pinning")
    if command in ("history", "search"):
        require(PRIVATE, "server_history")
    if command in ("login", "secret"):
        raise ClientError(f"'{command}' is for the social transport (--transport social); "
                          "the private transport is always end-to-end encrypted, with "
                          "one account per device home")
    if command == "whoami":
        if state.account is None:
            raise ClientError("not registered: run 'e2e-chat register NAME' first")
        print(f"{state.account} (device {state.device_id})")
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
        return await receive_command(client.session, args.wait, _printer(args.json))
    if command == "send-file":
        try:
            async with client.session() as session:
                sent = await session.send_file(args.name, args.path, args.caption, args.mime)
        except ConnectionLost as exc:
            raise ClientError(f"{exc}; run the same send-file again to resume the upload "
                              "where the relay's copy ends") from None
        assert sent.file is not None
        print(f"sent {sent.file.media.name} ({human_size(sent.file.media.size)}) to "
              f"{args.name}, end-to-end encrypted")
        return 0
    if command == "fetch-file":
        async with client.session() as session:
            record = await session.fetch_file(args.message_id)
        if record.path is None:
            raise ClientError(f"the file was not saved: {record.error}")
        print(record.path)
        return 0
    if command == "verify":
        async with client.session() as session:
            await session.device_list(args.name, refresh=True)
        if state.key_changed(args.name):
            print(f"warning: the account key of {args.name} changed since you last talked",
                  file=sys.stderr)
        code = _print_safety_number(state, args.name)
        if args.accept:
            held = state.accept_key(args.name)
            shown = f"; {held} held message(s) are shown by the next recv" if held else ""
            print(f"accepted {args.name}'s current account key{shown}")
        return code
    if command == "devices":
        async with client.session() as session:
            details = await session.device_details()
        print(f"{'id':>3}  {'name':<16}  {'linked at':<19}  last seen")
        for device_id, name, linked_at, last_seen in details:
            this = "  (this device)" if device_id == state.device_id else ""
            print(f"{device_id:>3}  {name:<16}  {_when(linked_at):<19}  {_when(last_seen)}{this}")
        return 0
    if command == "link":
        return await _link(client, args)
    if command == "approve":
        async with client.session() as session:
            device_id = await session.approve(args.code)
        print(f"linked device {device_id}; it was sent the contact list")
        return 0
    if command == "unlink":
        async with client.session() as session:
            await session.unlink(args.device_id)
        print(f"unlinked device {args.device_id}; it receives nothing new")
        return 0
    if command in ("react", "unreact"):
        async with client.session() as session:
            await session.react(args.message_id, args.emoji if command == "react" else None)
        return 0
    if command == "chat" and args.group is not None:
        return await _group_chat(client, args.group)
    if command == "chat":
        return await _chat(client, args.name)
    if command == "group":
        async with client.session() as session:
            await session.catch_up()
            await session.deliver_pending_updates()
            line = await _group(session, args)
        if line:
            print(line)
        return 0
    raise AssertionError(command)


async def _group(session: PrivateSession, args: argparse.Namespace) -> str:
    """Run one ``group`` action; the line to print."""
    action, name = args.group_command, args.name
    if action == "create":
        state = await session.group_create(name, args.members)
        return f"created group {name!r} with {len(state.members)} members"
    if action == "add":
        state = await session.group_add(name, args.members)
        return f"{name!r} has {len(state.members)} members"
    if action == "remove":
        await session.group_remove(name, args.member)
        return f"removed {args.member} from {name!r}"
    if action == "leave":
        await session.group_leave(name)
        return f"left {name!r}"
    if action == "rename":
        await session.group_rename(name, args.new_name)
        return f"renamed {name!r} to {args.new_name!r}"
    if action == "admin":
        await session.group_admin(name, args.member, not args.revoke)
        return f"{args.member} is {'no longer ' if args.revoke else ''}an admin of {name!r}"
    if action == "send":
        await session.group_send_text(name, args.text)
        return ""
    if action == "send-file":
        sent = await session.group_send_file(name, args.path, args.caption, args.mime)
        assert sent.file is not None
        return (f"sent {sent.file.media.name} ({human_size(sent.file.media.size)}) to the group "
                f"{name!r}, end-to-end encrypted")
    state = session.find_group(name).state
    return "\n".join(f"{m} (admin)" if state.is_admin(m) else m for m in state.members)


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
            await session.receive(_printer(False))
    if scope.cancelled_caught and not linked:
        raise ClientError(f"no approval within {args.wait:g} seconds; run link again")
    return 0


def _print_safety_number(state: ClientState, name: str) -> int:
    own, other = state.contact(state.account or ""), state.contact(name)
    if own is None or other is None:
        raise ClientError(f"no verified keys for {name!r}")
    number = safety_number(state.account or "", own[0], name, other[0])
    print(f"safety number with {name}:")
    print(format_safety_number(number))
    return 0


async def _group_chat(client: PrivateClient, name: str) -> int:
    async def prepare(session: PrivateSession) -> None:
        await session.catch_up()
        session.find_group(name)

    async def send(session: PrivateSession, text: str) -> None:
        await session.group_send_text(name, text)

    return await chat(client.session, name, _printer(False), prepare, send)


async def _chat(client: PrivateClient, name: str) -> int:
    return await chat(client.session, name, _printer(False),
                      lambda session: session.device_list(name))


def run_private(args: argparse.Namespace) -> int:
    """Run one ``e2e-chat`` command on the private transport; the process exit code."""
    return run_with_state(args.home, ClientState, lambda state: trio.run(_run, args, state),
                          "relay")

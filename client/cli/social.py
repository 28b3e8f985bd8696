"""``e2e-chat --transport social``: the command-line client of the social transport.

:func:`run_social` takes the arguments :func:`client.cli.main.build_parser` parsed and returns
the exit code: 0 on success, 1 with one line ``e2e-chat: ...`` on stderr for any user error (no
tracebacks). The device's state is ``HOME/social.db``; passwords come from ``E2E_PASSWORD`` or a
prompt. Message ids are the server's, printed as decimal strings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable

import trio

from e2e_proto.social_api import parse_message_id

from ..core.errors import ClientError
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialEvent, SocialState, StoredMessage
from .common import (
    chat,
    file_json,
    file_line,
    human_size,
    only_leaf,
    receive_command,
    run_with_state,
    tls_from_args,
)


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
    return f"{event.sender}: [{event.kind}]"


def event_json(event: SocialEvent) -> str:
    """The ``--json`` form of an event (``id`` is the message id, a decimal string)."""
    record: dict[str, object] = {
        "kind": event.kind, "conversation": event.conversation, "from": event.sender,
        "device": event.device, "id": None if event.message is None else str(event.message),
        "ts": event.ts}
    if event.kind == "message":
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


def _printer(as_json: bool, me: str) -> Callable[[SocialEvent], None]:
    def show(event: SocialEvent) -> None:
        if event.warning is not None:
            print(f"warning: {event.warning}", file=sys.stderr, flush=True)
        else:
            print(event_json(event) if as_json else format_event(event, me), flush=True)
    return show


def _message_id(text: str) -> int:
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
        print(f"{state.account} (device {state.device_id})")
        return 0
    if command == "recv":
        return await receive_command(client.session, args.wait,
                                     _printer(args.json, state.account or ""))
    if command == "chat":
        return await _chat(client, args.name or args.group)
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
        if record.path is None:
            raise ClientError(f"the file was not saved: {record.error}")
        print(record.path)
    elif command == "group":
        await _group(args, session)
    elif command == "react":
        await session.react(_message_id(args.message_id), args.emoji)
    elif command == "unreact":
        if not await session.unreact(_message_id(args.message_id)):
            raise ClientError(f"you have no reaction on message {args.message_id}")
    elif command == "pin":
        await session.pin(_message_id(args.message_id))
    elif command == "unpin":
        if not await session.unpin(_message_id(args.message_id)):
            raise ClientError(f"message {args.message_id} is not pinned")
    elif command == "pins":
        for message in await session.pins(args.name):
            print(format_stored(message))
    elif command == "history":
        before = None if args.before is None else _message_id(args.before)
        messages, more = await session.history(args.name, before)
        if more and messages:
            print(f"(older messages: history {args.name} --before {messages[0].id})")
        for message in messages:
            print(format_stored(message))
    elif command == "search":
        for message in await session.search(args.text):
            print(format_stored(message, with_conversation=True))
    elif command == "secret":
        changed = await session.make_secret(args.name)
        print(f"the conversation with {args.name} is {'now' if changed else 'already'} "
              "end-to-end encrypted")
    elif command == "verify":
        await _verify(session, args.name, args.accept)
    elif command == "devices":
        response = await session.request("get_devices", account=session.state.account or "")
        for device_id, key in response["devices"]:
            this = "  (this device)" if device_id == session.state.device_id else ""
            shown = "no key yet" if key is None else f"key {key[:8].hex()}"
            print(f"{device_id}  {shown}{this}")
    else:
        raise ClientError(f"'{command}' is not available on the social transport")
    return 0


async def _verify(session: SocialSession, name: str, accept: bool) -> None:
    """NAME's devices with their keys and whether they are accepted; ``accept`` accepts them."""
    for device_id, key, status in await session.device_report(name):
        print(f"{device_id}  key {key[:8].hex()}  {status}")
    if accept:
        count, held = await session.accept_devices(name)
        shown = f"; {held} held message(s) are shown by the next recv" if held else ""
        print(f"accepted the {count} device(s) of {name}{shown}")


async def _send_file(session: SocialSession, args: argparse.Namespace) -> None:
    """``send-file`` (and ``group send-file``): the message id, and on stderr what was sent and
    whether end to end."""
    sent = await session.send_file(args.name, args.path, args.caption, args.mime)
    if not sent.end_to_end:
        print(f"note: the conversation with {args.name} is not end-to-end encrypted: the "
              "server can read this file's key and so the file (run 'secret "
              f"{args.name}' first to encrypt files end to end)", file=sys.stderr)
    print(sent.message)
    print(f"sent {sent.file.media.name} ({human_size(sent.file.media.size)}) to "
          f"{args.name}" + (", end-to-end encrypted" if sent.end_to_end else
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
        print(f"created group {name} with {len(info['members'])} members")
    elif action == "add":
        info = await session.group_add(name, args.members)
        print(f"{name} has {len(info['members'])} members")
    elif action == "remove":
        await session.group_remove(name, args.member)
        print(f"removed {args.member} from {name}")
    elif action == "leave":
        await session.group_leave(name)
        print(f"left {name}")
    elif action == "rename":
        await session.group_rename(name, args.new_name)
        print(f"renamed {name} to {args.new_name}")
    elif action == "members":
        info = await session.conversation(name)
        if info.get("kind") != "group":
            raise ClientError(f"{name!r} is not a group")
        print("\n".join(info["members"]))
    else:
        raise ClientError("social groups have no admins: every member may add, remove and "
                          "rename")


async def _chat(client: SocialClient, name: str) -> int:
    return await chat(client.session, name, _printer(False, client.state.account or ""),
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

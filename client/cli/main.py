"""``e2e-chat``: the command-line client of the private transport.

Every failure is one line on stderr and a non-zero exit; there are no tracebacks for user
errors. Global options come before the command: ``e2e-chat --home DIR register alice``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from e2e_proto.capabilities import PRIVATE, SOCIAL, require
from e2e_proto.fingerprint import format_safety_number, safety_number

from ..core.errors import ClientError
from ..private.received import Received
from ..private.session import PrivateClient
from ..private.state import ClientState
from .common import (
    PROG,
    chat,
    receive_command,
    run_with_state,
    tls_from_args,
)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-chat``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="End-to-end encrypted chat over an e2e-proto relay.",
        epilog="Example: e2e-chat --home /tmp/alice register alice; "
               "e2e-chat --home /tmp/alice send bob 'hello'. Set E2E_PASSPHRASE to keep "
               "the keys and sessions sealed at rest (Argon2id + XChaCha20-Poly1305).")
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("E2E_HOME", "~/.e2e-chat")).expanduser(),
                        help="folder of this device's keys and messages "
                             "(env E2E_HOME, default ~/.e2e-chat)")
    parser.add_argument("--relay", type=_host_port,
                        default=os.environ.get("E2E_RELAY", "127.0.0.1:7400"),
                        metavar="HOST:PORT",
                        help="relay address (env E2E_RELAY, default 127.0.0.1:7400)")
    parser.add_argument("--transport", choices=[PRIVATE, SOCIAL],
                        default=os.environ.get("E2E_TRANSPORT", PRIVATE),
                        help="private (the end-to-end encrypted relay) or social (the "
                             "history-keeping server); env E2E_TRANSPORT, default private")
    parser.add_argument("--social", type=_host_port,
                        default=os.environ.get("E2E_SOCIAL", "127.0.0.1:7500"),
                        metavar="HOST:PORT",
                        help="social server address (env E2E_SOCIAL, default 127.0.0.1:7500)")
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, verifying the server with the system's CAs")
    parser.add_argument("--ca", metavar="FILE", default=os.environ.get("E2E_CA"),
                        help="connect with TLS, verifying the server against this CA "
                             "certificate (env E2E_CA)")
    parser.add_argument("--insecure", action="store_true",
                        help="connect with TLS without verifying the server: local "
                             "development only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register = commands.add_parser("register", help="create an account with this device as "
                                   "its primary")
    register.add_argument("name", help="account name: lowercase letters, digits, _ . -")
    commands.add_parser("whoami", help="print this device's account and device id")
    send = commands.add_parser("send", help="send one message")
    send.add_argument("name", help="recipient account")
    send.add_argument("text", help="message text")
    recv = commands.add_parser("recv", help="print queued messages (and, with --wait, new ones)")
    recv.add_argument("--wait", type=_seconds, default=None, metavar="SECONDS",
                      help="keep listening this many seconds")
    recv.add_argument("--json", action="store_true",
                      help="one JSON object per line: from, device, id, ts, text, to")
    chat = commands.add_parser("chat", help="interactive chat; /quit leaves")
    chat.add_argument("name", help="the other account")
    verify = commands.add_parser("verify", help="print the safety number shared with NAME")
    verify.add_argument("name", help="the other account")
    verify.add_argument("--accept", action="store_true",
                        help="after checking the number with NAME in person: trust NAME's "
                             "new account key (needed after a key change)")
    commands.add_parser("devices", help="list this account's devices (id, name, linked at, "
                        "last seen)")
    link = commands.add_parser("link", help="on a new device: ask to join account NAME; "
                               "prints a link code for the primary to approve")
    link.add_argument("name", help="the account to join")
    link.add_argument("--wait", type=_seconds, default=120.0, metavar="SECONDS",
                      help="how long to wait for the approval (default 120)")
    link.add_argument("--device-name", default=None, metavar="LABEL",
                      help="a name for this device, shown by 'devices' (default: the host name)")
    approve = commands.add_parser("approve", help="on the primary: link the device showing "
                                  "CODE (at most four linked devices)")
    approve.add_argument("code", help="the link code, XXXX-XXXX-XXXX-XXXX")
    unlink = commands.add_parser("unlink", help="on the primary: remove linked device ID")
    unlink.add_argument("device_id", type=int, metavar="ID", help="the device id to remove")
    login = commands.add_parser("login", help="social: log this device in (password from a "
                                "prompt or env E2E_PASSWORD)")
    login.add_argument("name", help="account name")
    for name, what in (("react", "react to a message with one emoji (private: a text "
                                 "reaction, end-to-end encrypted)"),
                       ("unreact", "remove your reaction to a message"),
                       ("pin", "social: pin a message"), ("unpin", "social: unpin a message")):
        command = commands.add_parser(name, help=what)
        command.add_argument("message_id", help="the message id, as 'recv --json' shows it "
                             "(private: hex, a unique prefix is enough; social: a number)")
        if name == "react":
            command.add_argument("emoji", help="exactly one emoji")
    pins = commands.add_parser("pins", help="social: list the pinned messages with NAME")
    pins.add_argument("name", help="account or group name")
    history = commands.add_parser("history", help="social: the conversation's history, "
                                  "newest last")
    history.add_argument("name", help="account or group name")
    history.add_argument("--before", metavar="ID", help="only messages before this message id")
    search = commands.add_parser("search", help="social: full-text search of your conversations")
    search.add_argument("text", help="words to find")
    secret = commands.add_parser("secret", help="social: make the conversation with NAME "
                                 "end-to-end encrypted")
    secret.add_argument("name", help="the other account")
    group = commands.add_parser("group", help="social: groups of up to 250 members")
    group_commands = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    create = group_commands.add_parser("create", help="create a group")
    create.add_argument("name", help="group name")
    create.add_argument("members", nargs="+", metavar="MEMBER", help="member accounts")
    group_send = group_commands.add_parser("send", help="send to a group")
    group_send.add_argument("name", help="group name")
    group_send.add_argument("text", help="message text")
    return parser


def format_message(message: Received) -> str:
    """``NAME: TEXT``, or ``you -> NAME: TEXT`` for a message sent from another own device."""
    text = message.text if message.text is not None else f"[unsupported {message.kind!r}]"
    if message.outgoing:
        return f"you -> {message.peer}: {text}"
    return f"{message.sender}: {text}"


def message_json(message: Received) -> str:
    """The ``--json`` form of a message."""
    return json.dumps({"from": message.sender, "device": message.sender_device,
                       "id": message.id.hex(), "ts": message.ts, "kind": message.kind,
                       "text": message.text, "to": message.peer if message.outgoing else None})


def _printer(as_json: bool) -> Callable[[Received], None]:
    def show(message: Received) -> None:
        if message.warning is not None:
            print(f"warning: {message.warning}", file=sys.stderr, flush=True)
        else:
            print(message_json(message) if as_json else format_message(message), flush=True)
    return show


async def _run(args: argparse.Namespace, state: ClientState) -> int:
    client = PrivateClient(state, *args.relay, tls=tls_from_args(args))
    command = args.command
    if command in ("pin", "unpin", "pins"):
        require(PRIVATE, "pinning")
    if command in ("history", "search"):
        require(PRIVATE, "server_history")
    if command in ("login", "secret", "group"):
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
    if command == "verify":
        async with client.session() as session:
            await session.device_list(args.name, refresh=True)
        if state.key_changed(args.name):
            print(f"warning: the account key of {args.name} changed since you last talked",
                  file=sys.stderr)
        code = _print_safety_number(state, args.name)
        if args.accept:
            state.accept_key(args.name)
            print(f"accepted {args.name}'s current account key")
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
    if command == "chat":
        return await _chat(client, args.name)
    raise AssertionError(command)


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


async def _link(client: PrivateClient, args: argparse.Namespace) -> int:
    name = args.device_name or socket.gethostname()[:64] or "device"
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
            await session.receive(_printer(False))
    if scope.cancelled_caught:
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


async def _chat(client: PrivateClient, name: str) -> int:
    return await chat(client.session, name, _printer(False),
                      lambda session: session.device_list(name))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-chat``."""
    args = build_parser().parse_args(argv)
    if args.transport == SOCIAL:
        from .social import run_social  # the social transport has its own client

        return run_social(args)
    return run_with_state(args.home, ClientState, lambda state: trio.run(_run, args, state),
                          "relay")


if __name__ == "__main__":
    sys.exit(main())

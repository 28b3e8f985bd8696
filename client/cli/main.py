"""``e2e-chat``: the entry point and the command line of both transports.

:func:`main` parses the command line (:func:`build_parser`) and runs the command on the private
transport (:mod:`client.cli.private`, the default) or the social one (:mod:`client.cli.social`).
Every failure is one line on stderr and a non-zero exit; there are no tracebacks for user
errors. Global options come before the command: ``e2e-chat --home DIR register alice``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e2e_proto.capabilities import PRIVATE, SOCIAL

from ..core.connection import DEFAULT_REQUEST_TIMEOUT
from ..daemon.forward import forward
from ..daemon.home import command_guard
from ..daemon.main import add_arguments as add_daemon_arguments
from ..daemon.main import run_daemon
from .common import PROG
from .private import run_private


def _host_port(text: str, lowest_port: int = 1) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to serve on; port 0 is any free port (logged once bound)."""
    return _host_port(text, lowest_port=0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("a timeout must be more than 0 seconds")
    return value


def _file_options(command: argparse.ArgumentParser) -> None:
    """``--caption`` and ``--mime`` of the commands that send a file."""
    command.add_argument("--caption", metavar="TEXT", help="a caption shown with the file")
    command.add_argument("--mime", metavar="TYPE/SUBTYPE",
                         help="its MIME type (default: guessed from the file name)")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options naming the servers and how to reach them (``--relay``, ``--social``,
    ``--timeout``, ``--tls``, ``--ca``, ``--insecure``); ``e2e-business`` takes them too."""
    parser.add_argument("--relay", type=_host_port,
                        default=os.environ.get("E2E_RELAY", "127.0.0.1:7400"),
                        metavar="HOST:PORT",
                        help="relay address (env E2E_RELAY, default 127.0.0.1:7400)")
    parser.add_argument("--social", type=_host_port,
                        default=os.environ.get("E2E_SOCIAL", "127.0.0.1:7500"),
                        metavar="HOST:PORT",
                        help="social server address (env E2E_SOCIAL, default 127.0.0.1:7500)")
    parser.add_argument("--timeout", type=_timeout,
                        default=os.environ.get("E2E_TIMEOUT", DEFAULT_REQUEST_TIMEOUT),
                        metavar="SECONDS",
                        help="seconds to wait for each answer from the server before giving "
                             f"up (env E2E_TIMEOUT, default {DEFAULT_REQUEST_TIMEOUT:g})")
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, verifying the server with the system's CAs")
    parser.add_argument("--ca", metavar="FILE", default=os.environ.get("E2E_CA"),
                        help="connect with TLS, verifying the server against this CA "
                             "certificate (env E2E_CA)")
    parser.add_argument("--insecure", action="store_true",
                        help="connect with TLS without verifying the server: local "
                             "development only")


def _between_commands(commands: Any) -> None:
    """Profiles, status updates, account links and chats with the other transport."""
    profile = commands.add_parser("profile", help="your profile (private: end to end to your "
                                  "contacts; social: kept by the server)")
    profile_commands = profile.add_subparsers(dest="profile_command", required=True,
                                              metavar="ACTION")
    profile_set = profile_commands.add_parser("set", help="change your display name, about "
                                              "text or avatar (what is not given stays)")
    profile_set.add_argument("--name", help="display name (at most 64 characters)")
    profile_set.add_argument("--about", help="about text (at most 500 characters)")
    profile_set.add_argument("--avatar", metavar="PATH", help="a picture file")
    profile_show = profile_commands.add_parser("show", help="show a profile (yours by "
                                               "default)")
    profile_show.add_argument("name", nargs="?", help="the account")
    status = commands.add_parser("status", help="status updates, shown for 24 hours")
    status_commands = status.add_subparsers(dest="status_command", required=True,
                                            metavar="ACTION")
    status_post = status_commands.add_parser("post", help="post a status update")
    status_post.add_argument("text", help="the update (at most 700 characters)")
    status_commands.add_parser("list", help="the live updates of you and your contacts")
    link_account = commands.add_parser(
        "link-account", help="private primary: link this account to a social account (its "
        "logged-in device in --social-home signs too); shares only the allow-list: account "
        "name, display name, about, status updates, device names and last seen")
    link_account.add_argument("--social-home", type=Path, required=True, metavar="DIR",
                              help="the home of a logged-in device of the social account")
    commands.add_parser("unlink-account", help="private primary: end the account link; the "
                        "social server deletes what it received")
    commands.add_parser("sharing", help="private: what the account link shared with the "
                        "social server, and when")
    commands.add_parser("linked", help="social: the private account linked to this one, and "
                        "what it shared")
    cross = commands.add_parser(
        "cross", help="chats with the other transport (NAME@private / NAME@social), end to "
        "end encrypted: opt in or out; social: a cross identity on up to five devices")
    cross_commands = cross.add_subparsers(dest="cross_command", required=True,
                                          metavar="ACTION")
    cross_commands.add_parser("on", help="take chats with the other transport (social: "
                              "make this account's cross identity, or ask to join it)")
    cross_commands.add_parser("off", help="stop taking them (nobody of the other transport "
                              "can reach you)")
    cross_commands.add_parser("status", help="whether they are on (social: which devices)")
    approve = cross_commands.add_parser("approve", help="social, on the device holding the "
                                        "cross identity: add a device that asked to join")
    approve.add_argument("device_id", type=int, metavar="ID", help="the device's id")
    approve.add_argument("key", help="the start of the key it printed (16+ hex digits)")
    remove = cross_commands.add_parser("remove", help="social, on the device holding the "
                                       "cross identity: take a device off")
    remove.add_argument("device_id", type=int, metavar="ID", help="the device's id")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-chat``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="End-to-end encrypted chat over an e2e-proto relay.",
        epilog="Example: e2e-chat --home /tmp/alice register alice; "
               "e2e-chat --home /tmp/alice send bob 'hello'. Set E2E_PASSPHRASE to keep "
               "the keys, sessions and message texts sealed at rest (Argon2id + "
               "XChaCha20-Poly1305).")
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("E2E_HOME", "~/.e2e-chat")).expanduser(),
                        help="folder of this device's keys and messages "
                             "(env E2E_HOME, default ~/.e2e-chat)")
    parser.add_argument("--transport", choices=[PRIVATE, SOCIAL],
                        default=os.environ.get("E2E_TRANSPORT", PRIVATE),
                        help="private (the end-to-end encrypted relay) or social (the "
                             "history-keeping server); env E2E_TRANSPORT, default private")
    add_server_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register = commands.add_parser("register", help="create an account with this device as "
                                   "its primary")
    register.add_argument("name", help="account name: lowercase letters, digits, _ . -")
    commands.add_parser("whoami", help="print this device's account and device id")
    send = commands.add_parser("send", help="send one message")
    send.add_argument("name", help="recipient account (NAME@social or NAME@private: an account "
                      "of the other transport, end to end encrypted; see 'cross')")
    send.add_argument("text", help="message text")
    send_file = commands.add_parser(
        "send-file", help="send a file (at most 100 MiB), encrypted; social: end-to-end only "
        "in a secret conversation")
    send_file.add_argument("name", help="recipient account (social: account or group)")
    send_file.add_argument("path", help="the file to send")
    _file_options(send_file)
    recv = commands.add_parser("recv", help="print queued messages (and, with --wait, new ones); "
                               "received files are saved in HOME/files/")
    recv.add_argument("--wait", type=_seconds, default=None, metavar="SECONDS",
                      help="keep listening this many seconds")
    recv.add_argument("--json", action="store_true",
                      help="one JSON object per line: from, device, id, ts, text, to, group; "
                           "for a file also path, size, mime, sha256 (or error)")
    fetch_file = commands.add_parser("fetch-file", help="download again the file of a message "
                                     "whose download failed")
    fetch_file.add_argument("message_id", metavar="ID", help="the message id, as 'recv --json' "
                            "shows it (private: a unique hex prefix is enough)")
    chat = commands.add_parser("chat", help="interactive chat; /quit leaves")
    chat.add_argument("name", nargs="?", help="the other account")
    chat.add_argument("--group", metavar="NAME", help="chat in the group NAME instead")
    verify = commands.add_parser("verify", help="print the safety number shared with NAME "
                                 "(social: NAME's device keys and which are accepted)")
    verify.add_argument("name", help="the other account (NAME@social / NAME@private too)")
    verify.add_argument("--accept", action="store_true",
                        help="after checking with NAME in person: trust NAME's new account key "
                             "(social: NAME's devices as listed now); needed after a change, "
                             "and messages from NAME (social: its new devices) are held until "
                             "then")
    commands.add_parser("devices", help="list this account's devices (private: id, name, linked "
                        "at, last seen; social: id, key, logged in, last seen, token expiry)")
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
    unlink = commands.add_parser("unlink", help="on the primary: remove linked device ID "
                                 "(social: revoke device ID's login, from any device)")
    unlink.add_argument("device_id", type=int, metavar="ID", help="the device id to remove")
    login = commands.add_parser("login", help="social: log this device in (password from a "
                                "prompt or env E2E_PASSWORD)")
    login.add_argument("name", help="account name")
    commands.add_parser("logout", help="social: revoke this device's login at the server (log "
                        "in again with 'login NAME')")
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
    call = commands.add_parser(
        "call", help="call NAME (or answer NAME's call), start or join a group's call "
        "(--group NAME), or answer the call ringing here (--answer): up to 8 participants on "
        "the private transport (end to end), 50 on the social one; runs a synthetic stream, "
        "then prints what arrived from each participant")
    call.add_argument("name", nargs="?", help="the other account")
    call.add_argument("--group", metavar="NAME", help="the group's call instead")
    call.add_argument("--answer", action="store_true", help="join the call ringing here")
    call.add_argument("--seconds", type=_seconds, default=10.0, metavar="N",
                      help="how long to stay in the call (default 10)")
    call.add_argument("--video", action="store_true",
                      help="video-like frames (1-8 KiB at 30 fps) instead of audio-like ones "
                           "(160 B at 50 fps)")
    call.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    group = commands.add_parser("group", help="groups: up to 1024 members on the private "
                                "transport (end to end, sender keys), 250 on the social one")
    group_commands = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")
    for action, what, extra in (
            ("create", "create a group (you are its admin)", "members"),
            ("add", "admins: add members", "members"),
            ("remove", "admins: remove a member", "member"),
            ("leave", "leave the group", None),
            ("rename", "admins: rename the group", "new_name"),
            ("members", "list the members (admins marked)", None),
            ("admin", "private, admins: make a member an admin (--revoke: no longer)", "member"),
            ("send", "send to the group", "text"),
            ("send-file", "send a file to the group (private: end to end, as one group "
                          "message; social: as send-file)", "path")):
        sub = group_commands.add_parser(action, help=what)
        sub.add_argument("name", help="group name")
        if extra == "members":
            sub.add_argument("members", nargs="+", metavar="MEMBER", help="member accounts")
        elif extra is not None:
            sub.add_argument(extra, metavar=extra.upper(), help=extra.replace("_", " "))
        if action == "admin":
            sub.add_argument("--revoke", action="store_true", help="no longer an admin")
        if action == "send-file":
            _file_options(sub)
    _between_commands(commands)
    daemon = commands.add_parser(
        "daemon", help="serve this home to bots and scripts over JSON-RPC (HOME/daemon.sock; "
        "docs/JSONRPC.md); while it runs, the other commands on this home go through it")
    add_daemon_arguments(daemon, _listen_address)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-chat``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        return run_daemon(args)
    if args.command == "chat" and (args.name is None) == (args.group is None):
        parser.error("chat needs an account NAME or --group NAME (not both)")
    if args.command == "call" and [args.name is not None, args.group is not None,
                                   args.answer].count(True) != 1:
        parser.error("call needs an account NAME, --group NAME or --answer (one of them)")
    with command_guard(args.home) as served:
        if served:  # a daemon serves this home: the command is a call to it
            code = forward(args)
            if code is not None:
                return code
        if args.transport == SOCIAL:
            from .social import run_social  # the social transport has its own client

            return run_social(args)
        return run_private(args)


if __name__ == "__main__":
    sys.exit(main())

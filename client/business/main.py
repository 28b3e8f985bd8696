"""``e2e-business``: the business inbox's command line.

* ``link NAME``: make this home a linked device of the business's private account NAME (the
  primary approves the code it prints, as for any device: ``e2e-chat approve CODE``).
* ``login NAME``: log this home in to the business's social account NAME (password from a
  prompt or ``E2E_PASSWORD``).
* ``agent add NAME`` / ``agent remove NAME`` / ``agent list``: the people who may log in to the
  inbox (a password is read without echo, or from the first line of standard input).
* ``serve --http HOST:PORT``: run the inbox (:mod:`.web`) with both lines (:mod:`.lines`).

``link`` and ``login`` are ``e2e-chat``'s own commands on this home. Everything the home holds
is sealed with ``E2E_PASSPHRASE`` when it is set. Failures are one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.errors import E2EProtoError

from ..cli import main as chat_main
from ..cli.common import tls_from_args
from ..core.binding import check_bind
from ..core.errors import ClientError
from ..private.session import PrivateClient
from ..private.state import ClientState
from ..social.session import SocialClient
from ..social.state import SocialState
from .agents import check_agent_name, hash_password
from .changes import Changes
from .config import InboxConfig
from .lines import Line, PrivateLine, SocialLine
from .serving import allowed_hosts, hypercorn_config, serve_http
from .store import InboxStore
from .web import build_app

PROG = "e2e-business"
log = logging.getLogger("e2e.business")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-business``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="The business inbox: one web page for the conversations of a "
        "business's private and social accounts, served by a device that holds the keys.",
        epilog="Example: e2e-business --home /srv/inbox link shop; e2e-business --home "
               "/srv/inbox login shop; e2e-business --home /srv/inbox agent add ann; "
               "e2e-business --home /srv/inbox serve --http 127.0.0.1:8080")
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("E2E_BUSINESS_HOME",
                                                    "~/.e2e-business")).expanduser(),
                        help="the inbox device's folder, a home of its own (env "
                             "E2E_BUSINESS_HOME, default ~/.e2e-business)")
    chat_main.add_server_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    link = commands.add_parser("link", help="link this home to the business's private "
                               "account NAME (the primary approves the printed code)")
    link.add_argument("name", help="the business's private account")
    link.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                      help="how long to wait for the approval (default 120)")
    link.add_argument("--device-name", default="inbox", metavar="LABEL",
                      help="this device's name in 'devices' (default inbox)")
    login = commands.add_parser("login", help="log this home in to the business's social "
                                "account NAME (password from a prompt or env E2E_PASSWORD)")
    login.add_argument("name", help="the business's social account")
    agent = commands.add_parser("agent", help="the agents who may log in to the inbox")
    actions = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an agent, or set a new password (which ends "
                             "their sessions); the password is read without echo, or from "
                             "standard input's first line")
    add.add_argument("name", help="1-32 lowercase letters, digits, _ . -")
    remove = actions.add_parser("remove", help="remove an agent (and end their sessions)")
    remove.add_argument("name")
    actions.add_parser("list", help="list the agents")
    serve = commands.add_parser("serve", help="serve the inbox")
    serve.add_argument("--http", type=chat_main._host_port, default=("127.0.0.1", 8080),
                       metavar="HOST:PORT",
                       help="where to serve it (default 127.0.0.1:8080; a non-loopback "
                            "address needs --tls-cert and --tls-key)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="... and this private key")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="another Host name browsers use to reach the inbox (repeatable)")
    return parser


def read_new_password(name: str) -> str:
    """A new password for agent ``name``: typed twice without echo, or standard input's first
    line when it is not a terminal."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass(f"password for {name}: ")
        again = getpass.getpass("again: ")
    except EOFError:
        raise ClientError("no password given") from None
    if first != again:
        raise ClientError("the two passwords differ")
    return first


def _passphrase() -> str | None:
    return os.environ.get("E2E_PASSPHRASE") or None


def _agent(args: argparse.Namespace) -> int:
    store = InboxStore(args.home, _passphrase())
    try:
        if args.agent_command == "list":
            for name in store.agents():
                print(name)
        elif args.agent_command == "add":
            name = check_agent_name(args.name)
            store.set_agent(name, hash_password(read_new_password(name)), time.time())
            print(f"agent {name} can log in")
        elif not store.remove_agent(args.name):
            raise ClientError(f"no agent named {args.name!r}")
        else:
            print(f"removed agent {args.name}")
    finally:
        store.close()
    return 0


def _server_options(args: argparse.Namespace) -> list[str]:
    """The global options, as ``e2e-chat`` takes them."""
    options = ["--home", str(args.home), "--relay", "{}:{}".format(*args.relay),
               "--social", "{}:{}".format(*args.social), "--timeout", str(args.timeout)]
    options += ["--tls"] if args.tls else []
    options += ["--ca", args.ca] if args.ca else []
    return options + (["--insecure"] if args.insecure else [])


def open_lines(args: argparse.Namespace, store: InboxStore, changes: Changes
               ) -> dict[str, Line[Any, Any]]:
    """The lines this home has an account for (private: linked; social: logged in)."""
    home, passphrase = args.home, _passphrase()
    options: dict[str, Any] = {"tls": tls_from_args(args), "request_timeout": args.timeout}
    lines: dict[str, Line[Any, Any]] = {}
    if (home / ClientState.state_file).exists():
        state = ClientState(home, passphrase)
        if state.account is not None:
            lines[PRIVATE] = PrivateLine(PrivateClient(state, *args.relay, **options), store,
                                         changes)
        else:
            state.close()
    if (home / SocialState.state_file).exists():
        social = SocialState(home, passphrase)
        if social.account is not None:
            lines[SOCIAL] = SocialLine(SocialClient(social, *args.social, **options), store,
                                       changes)
        else:
            social.close()
    return lines


async def _serve(args: argparse.Namespace, store: InboxStore,
                 lines: dict[str, Line[Any, Any]], changes: Changes) -> None:
    host, port = args.http
    tls = args.tls_cert is not None
    config = InboxConfig(secure_cookies=tls, allowed_hosts=allowed_hosts(host, args.allowed_host))
    app = build_app(store, lines, changes, config)
    async with trio.open_nursery() as nursery:
        for line in lines.values():
            await nursery.start(line.run)
        bound = await nursery.start(serve_http, app,
                                    hypercorn_config(host, port, args.tls_cert, args.tls_key))
        shown = f"[{host}]" if ":" in host else host
        print(f"{PROG}: inbox listening on {'https' if tls else 'http'}://{shown}:{bound}/ "
              f"({', '.join(f'{t} {line.account}' for t, line in lines.items()) or 'no account'})",
              file=sys.stderr, flush=True)


def _run_serve(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ClientError("give both --tls-cert and --tls-key")
    check_bind(args.http[0], args.tls_cert is not None, "the inbox",
               "give --tls-cert and --tls-key (or bind to 127.0.0.1)")
    store = InboxStore(args.home, _passphrase())
    changes = Changes()
    lines: dict[str, Line[Any, Any]] = {}
    try:
        lines = open_lines(args, store, changes)
        if not lines:
            print(f"{PROG}: warning: this home has no account yet: run 'link NAME' and "
                  "'login NAME' first", file=sys.stderr)
        if not store.agents():
            print(f"{PROG}: warning: no agent can log in yet: run 'agent add NAME'",
                  file=sys.stderr)
        trio.run(_serve, args, store, lines, changes)
    except KeyboardInterrupt:
        return 130
    finally:
        for line in lines.values():
            line.client.state.close()
        store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-business``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    if args.command == "link":
        return chat_main.main([*_server_options(args), "link", args.name, "--wait",
                               str(args.wait), "--device-name", args.device_name])
    if args.command == "login":
        return chat_main.main([*_server_options(args), "--transport", SOCIAL, "login",
                               args.name])
    try:
        return _agent(args) if args.command == "agent" else _run_serve(args)
    except ClientError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error, E2EProtoError) as exc:  # a home that does not open
        print(f"{PROG}: cannot open {args.home}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

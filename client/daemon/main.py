"""``e2e-chat daemon``: serve the home's accounts to bots and scripts until stopped.

:func:`run_daemon` takes the home (refusing a second daemon on it), opens its event queue and
every account the home has (private and social), and serves JSON-RPC on ``HOME/daemon.sock``,
and on TCP and HTTP when asked (with the bearer token of ``HOME/daemon.token``; loopback
addresses only, as neither has TLS: :func:`~client.core.binding.check_bind`). It logs to
stderr, and stops on SIGTERM or SIGINT; the exit code is 0 then, 1 with one line for a user's
error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

import trio

from ..cli.common import PROG, tls_from_args
from ..core.binding import check_bind
from ..core.errors import ClientError
from .accounts import Account, open_accounts
from .config import DaemonConfig
from .home import DaemonLocks, bearer_token, socket_path
from .hub import EventHub
from .queue import EventQueue
from .server import Daemon, serve


def add_arguments(parser: argparse.ArgumentParser, host_port: object) -> None:
    """The ``daemon`` command's options (``host_port`` parses ``HOST:PORT``, port 0 meaning any
    free port, which the daemon logs)."""
    defaults = DaemonConfig()
    parser.add_argument("--tcp", type=host_port, metavar="HOST:PORT",
                        help="also serve newline-delimited JSON-RPC on TCP, on a loopback "
                             "address (port 0: any free port, logged); clients call auth with "
                             "the token in HOME/daemon.token first")
    parser.add_argument("--http", type=host_port, metavar="HOST:PORT",
                        help="also serve HTTP, on a loopback address (port 0: any free port, "
                             "logged): POST /rpc, GET /events (server-sent events), with "
                             "Authorization: Bearer TOKEN from HOME/daemon.token")
    parser.add_argument("--max-queued", type=int, default=defaults.max_queued_events,
                        metavar="N", help="events kept until a subscriber acks them; at N, "
                        "new messages wait on the server (default "
                        f"{defaults.max_queued_events})")
    parser.add_argument("--write-timeout", type=float, default=defaults.write_timeout,
                        metavar="SECONDS", help="cut off a client that does not read for this "
                        f"long (default {defaults.write_timeout:g})")
    parser.add_argument("--max-line", type=int, default=defaults.max_line_bytes,
                        metavar="BYTES", help="the longest request line (default "
                        f"{defaults.max_line_bytes})")


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    """The limits the command line asks for."""
    queued = max(1, args.max_queued)
    return dataclasses.replace(DaemonConfig(), max_queued_events=queued,
                               resume_queued_events=queued * 9 // 10,
                               write_timeout=args.write_timeout, max_line_bytes=args.max_line)


def run_daemon(args: argparse.Namespace) -> int:
    """Run ``e2e-chat daemon``; the process exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = args.home
    config = config_from_args(args)
    locks = DaemonLocks(home)
    queue: EventQueue | None = None
    accounts: dict[str, Account] = {}  # type: ignore[type-arg]
    try:
        for option, address in (("--tcp", args.tcp), ("--http", args.http)):
            if address is not None:
                check_bind(address[0], False, "the daemon", f"it has none, so bind {option} "
                           "to 127.0.0.1 (a TLS proxy there can serve other machines)")
        locks.acquire()
        unix = socket_path(home)
        passphrase = os.environ.get("E2E_PASSPHRASE") or None
        queue = EventQueue(home, passphrase, kept_keys=config.kept_keys)
        hub = EventHub(queue, config)
        accounts = open_accounts(home, passphrase, args.relay, args.social, hub, config,
                                 tls=tls_from_args(args), request_timeout=args.timeout)
        if not accounts:
            raise ClientError(f"{home} has no account: register (or, social, log in) first")
        token = bearer_token(home) if args.tcp or args.http else None
        daemon = Daemon(home, hub, accounts, config, token)
        trio.run(serve, daemon, unix, args.tcp, args.http)
        return 0
    except ClientError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # unwritable home, a state that will not open, a busy port
        print(f"{PROG}: the daemon cannot run: {exc}", file=sys.stderr)
        return 1
    finally:
        for account in accounts.values():
            account.client.state.close()
        if queue is not None:
            queue.close()
        locks.release()

"""``e2e-social``: run the social server (a separate program and database from the relay).

    e2e-social serve --listen 127.0.0.1:7500 --db social.db [--tls-cert FILE --tls-key FILE]
                     [--token-days 30] [--registrations-per-hour 30]
                     [--blob-dir DIR] [--blob-quota-mib 1024] [--blob-ttl-days 30]
                     [--sfu HOST:PORT | --sfu-address HOST:PORT --sfu-key-file FILE]
                     [--peer-listen HOST:PORT --peer-relay HOST:PORT... --peer-key-file FILE]
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence

import trio

from ..calls.options import CallSetupError, add_call_arguments, call_setup
from ..common import serving
from ..federation.options import PeerSetupError, add_peer_arguments, peer_setup
from ..federation.social import SocialFederation
from .config import DAY, SocialConfig
from .server import SocialServer
from .sqlite_store import SqliteSocialStore

log = logging.getLogger("e2e.social")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-social``."""
    parser = argparse.ArgumentParser(
        prog="e2e-social", description="The e2e-proto social server: accounts with passwords, "
        "history, search, reactions, pins, and opt-in end-to-end encrypted conversations.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="run the social server")
    serving.add_serve_arguments(serve_command, 7500, "social.db",
                                SocialConfig().registrations_per_hour)
    serve_command.add_argument("--token-days", type=float, default=30.0,
                               help="days a device's session token is valid (default 30)")
    serving.add_blob_arguments(serve_command)
    add_call_arguments(serve_command)
    add_peer_arguments(serve_command, "relay", several=True)
    return parser


async def serve(server: SocialServer, host: str, port: int, tls: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    """Listen on ``host:port`` and serve (expiring old files) until cancelled; reports the
    listeners when ready.
    """
    await serving.serve(server, host, port, tls, task_status,
                        background=[server.blobs.expire_forever])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-social``."""
    args = build_parser().parse_args(argv)
    try:
        calls = call_setup(args)
        peer = peer_setup(args)
    except (CallSetupError, PeerSetupError) as exc:
        print(f"e2e-social: {exc}", file=sys.stderr)
        return 2

    def make_server(store: SqliteSocialStore) -> SocialServer:
        server = SocialServer(store, SocialConfig(
            token_ttl=args.token_days * DAY, registrations_per_hour=args.registrations_per_hour,
            registration_burst=max(1, round(args.registrations_per_hour)),
            blobs=serving.blob_limits(args)), blob_dir=args.blob_dir, sfu=calls.grant)
        if peer is not None:
            server.federation = SocialFederation(server, peer)
        return server

    async def serve_with_calls(server: SocialServer, host: str, port: int,
                               tls: ssl.SSLContext | None = None,
                               task_status: trio.TaskStatus[list[trio.SocketListener]] = (
                                   trio.TASK_STATUS_IGNORED)) -> None:
        log.info("%s", calls.describe())
        peers = [] if server.federation is None else [server.federation.run]
        await serving.serve(server, host, port, tls, task_status,
                            background=[server.blobs.expire_forever, *calls.tasks, *peers])

    return serving.run_serve_command(
        "e2e-social", args, log, serving.opening(lambda: SqliteSocialStore(args.db), make_server),
        serve_with_calls, args.db)


if __name__ == "__main__":
    sys.exit(main())

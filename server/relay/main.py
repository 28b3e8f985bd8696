"""``e2e-relay``: run the ciphertext-only relay.

    e2e-relay serve --listen 127.0.0.1:7400 [--store sqlite:relay.db | --db relay.db]
                    [--tls-cert FILE --tls-key FILE]
                    [--ttl-days 30] [--quota 10000] [--quota-mib 100] [--max-groups 1000]
                    [--registrations-per-hour 30]
                    [--blob-dir DIR] [--blob-quota-mib 1024] [--blob-ttl-days 30]
                    [--sfu HOST:PORT | --sfu-address HOST:PORT --sfu-key-file FILE]
                    [--peer-listen HOST:PORT --peer-social HOST:PORT --peer-key-file FILE]
    e2e-relay serve --listen 127.0.0.1:7401 --store redis://127.0.0.1:6379/0 --blob-dir DIR
    e2e-relay peer-keygen FILE      (the key the relay and the social server share)

Several relays may serve one user base on one Redis (``--store redis://...``, DESIGN §17); they
share one ``--blob-dir`` (a folder every node can reach), which a Redis store requires.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
import sys
from collections.abc import AsyncIterator, Sequence

import trio

from ..calls.keyfile import write_key_file
from ..calls.options import CallSetupError, add_call_arguments, call_setup
from ..common import serving
from ..federation.options import PeerSetupError, add_peer_arguments, peer_setup
from ..federation.relay import RelayFederation
from .backends import is_redis, open_backend, store_location
from .config import DAY, MIB, RelayConfig
from .server import Relay

log = logging.getLogger("e2e.relay")

DEFAULT_DB = "relay.db"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-relay``."""
    parser = argparse.ArgumentParser(
        prog="e2e-relay", description="The e2e-proto relay: stores and forwards ciphertext only.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the relay")
    serving.add_serve_arguments(serve, 7400, None, RelayConfig().registrations_per_hour)
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--store", type=store_location, metavar="URL",
                       help=f"sqlite:PATH (default sqlite:{DEFAULT_DB}) or redis://HOST:PORT/DB "
                       "(several relays on one Redis >= 7, with one shared --blob-dir)")
    where.add_argument("--db", metavar="PATH", help="short for --store sqlite:PATH")
    serve.add_argument("--ttl-days", type=float, default=30.0,
                       help="days an undelivered message is kept (default 30)")
    serve.add_argument("--quota", type=int, default=10_000,
                       help="messages kept per device mailbox (default 10000)")
    serve.add_argument("--quota-mib", type=float, default=100.0,
                       help="MiB of envelopes kept per device mailbox (default 100)")
    serve.add_argument("--max-groups", type=int, default=RelayConfig().max_groups_per_account,
                       help="group routing copies an account may have created that still have "
                       "members (default %(default)s)")
    serving.add_blob_arguments(serve)
    add_call_arguments(serve)
    add_peer_arguments(serve, "social")
    keygen = commands.add_parser("peer-keygen", help="write a new key for the link between "
                                 "the relay and the social server")
    keygen.add_argument("file", help="the key file to create (not overwritten)")
    return parser


async def serve(relay: Relay, host: str, port: int, tls: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    """Listen on ``host:port`` and serve (hearing other nodes, expiring old mail) until
    cancelled; reports the listeners when ready.
    """
    await serving.serve(relay, host, port, tls, task_status,
                        background=[relay.hub.run, relay.expire_forever,
                                    relay.blobs.expire_forever])


def relay_config(args: argparse.Namespace) -> RelayConfig:
    """The limits ``e2e-relay serve``'s options set (the others keep their defaults)."""
    return RelayConfig(
        mailbox_ttl=args.ttl_days * DAY, mailbox_quota=args.quota,
        mailbox_quota_bytes=int(args.quota_mib * MIB), max_groups_per_account=args.max_groups,
        registrations_per_hour=args.registrations_per_hour,
        registration_burst=max(1, round(args.registrations_per_hour)),
        blobs=serving.blob_limits(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-relay``."""
    args = build_parser().parse_args(argv)
    if args.command == "peer-keygen":
        try:
            write_key_file(args.file)
        except OSError as exc:
            print(f"e2e-relay: cannot create {args.file}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        return 0
    location = args.store or f"sqlite:{args.db or DEFAULT_DB}"
    if is_redis(location) and args.blob_dir is None:
        print("e2e-relay: a relay on Redis needs --blob-dir DIR, a folder that every relay "
              "node on that Redis shares", file=sys.stderr)
        return 2
    try:
        calls = call_setup(args)
        peer = peer_setup(args)
    except (CallSetupError, PeerSetupError) as exc:
        print(f"e2e-relay: {exc}", file=sys.stderr)
        return 2
    config = relay_config(args)

    @contextlib.asynccontextmanager
    async def open_relay() -> AsyncIterator[Relay]:
        async with open_backend(location) as (store, hub):
            relay = Relay(store, config, hub=hub, blob_dir=args.blob_dir, sfu=calls.grant)
            if peer is not None:
                relay.federation = RelayFederation(relay, peer)
            yield relay

    async def serve_with_calls(relay: Relay, host: str, port: int,
                               tls: ssl.SSLContext | None = None,
                               task_status: trio.TaskStatus[list[trio.SocketListener]] = (
                                   trio.TASK_STATUS_IGNORED)) -> None:
        log.info("%s", calls.describe())
        peers = [] if relay.federation is None else [relay.federation.run]
        await serving.serve(relay, host, port, tls, task_status,
                            background=[relay.hub.run, relay.expire_forever,
                                        relay.blobs.expire_forever, *calls.tasks, *peers])

    return serving.run_serve_command("e2e-relay", args, log, open_relay, serve_with_calls,
                                     location)


if __name__ == "__main__":
    sys.exit(main())

"""``e2e-social``: run the social server (a separate program and database from the relay).

    e2e-social serve --listen 127.0.0.1:7500 --db social.db [--tls-cert FILE --tls-key FILE]
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence

import trio

from .relay_main import parse_host_port
from .social import DAY, SocialConfig, SocialServer
from .social_store import SqliteSocialStore

log = logging.getLogger("e2e.social")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-social``."""
    parser = argparse.ArgumentParser(
        prog="e2e-social", description="The e2e-proto social server: accounts with passwords, "
        "history, search, reactions, pins, and opt-in end-to-end encrypted conversations.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="run the social server")
    serve_command.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", 7500),
                               metavar="HOST:PORT", help="address to listen on (default "
                               "127.0.0.1:7500; port 0 picks a free port)")
    serve_command.add_argument("--db", default="social.db",
                               help="SQLite database file (default social.db)")
    serve_command.add_argument("--tls-cert", metavar="FILE",
                               help="serve TLS with this certificate chain")
    serve_command.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert")
    serve_command.add_argument("--token-days", type=float, default=30.0,
                               help="days a device's session token is valid (default 30)")
    return parser


async def serve(server: SocialServer, host: str, port: int, tls: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
                ) -> None:
    """Listen on ``host:port`` and serve until cancelled; reports the listeners when ready."""
    listeners: list = await trio.open_tcp_listeners(port, host=host)
    if tls is not None:
        listeners = [trio.SSLListener(listener, tls, https_compatible=False)
                     for listener in listeners]

    async def handler(stream: trio.abc.Stream) -> None:
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        try:
            name = socket_stream.socket.getpeername()  # type: ignore[attr-defined]
            peer = f"{name[0]}:{name[1]}"
        except OSError:
            peer = "?"
        await server.handle_stream(stream, peer)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)


def bound_address(listeners: list) -> str:
    """``HOST:PORT`` of the first listener (for the start-up log line)."""
    listener = listeners[0]
    socket_listener = listener.transport_listener if isinstance(
        listener, trio.SSLListener) else listener
    host, port = socket_listener.socket.getsockname()[:2]
    return f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-social``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("e2e-social: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"e2e-social: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    try:
        store = SqliteSocialStore(args.db)
    except Exception as exc:  # unreadable path, not a database, ...
        print(f"e2e-social: cannot open database {args.db}: {exc}", file=sys.stderr)
        return 2
    server = SocialServer(store, SocialConfig(token_ttl=args.token_days * DAY))
    host, port = args.listen

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, server, host, port, tls)
            log.info("e2e-social listening on %s (db %s%s)", bound_address(listeners), args.db,
                     ", TLS" if tls else "")

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"e2e-social: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``e2e-relay``: run the ciphertext-only relay.

    e2e-relay serve --listen 127.0.0.1:7400 --db relay.db [--tls-cert FILE --tls-key FILE]
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Sequence

import trio

from .relay import DAY, Relay, RelayConfig
from .relay_store import SqliteRelayStore

log = logging.getLogger("e2e.relay")


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to a pair; :class:`argparse.ArgumentTypeError` when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-relay``."""
    parser = argparse.ArgumentParser(
        prog="e2e-relay", description="The e2e-proto relay: stores and forwards ciphertext only.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the relay")
    serve.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", 7400),
                       metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:7400; "
                       "port 0 picks a free port)")
    serve.add_argument("--db", default="relay.db", help="SQLite database file (default relay.db)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate chain")
    serve.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert")
    serve.add_argument("--ttl-days", type=float, default=30.0,
                       help="days an undelivered message is kept (default 30)")
    serve.add_argument("--quota", type=int, default=10_000,
                       help="messages kept per device mailbox (default 10000)")
    return parser


async def serve(relay: Relay, host: str, port: int, tls: ssl.SSLContext | None = None,
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
        await relay.handle_stream(stream, peer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay.expire_forever)
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)


def _bound(listeners: list) -> str:
    listener = listeners[0]
    socket_listener = listener.transport_listener if isinstance(
        listener, trio.SSLListener) else listener
    host, port = socket_listener.socket.getsockname()[:2]
    return f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-relay``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("e2e-relay: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"e2e-relay: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    try:
        store = SqliteRelayStore(args.db)
    except Exception as exc:  # unreadable path, not a database, ...
        print(f"e2e-relay: cannot open database {args.db}: {exc}", file=sys.stderr)
        return 2
    config = RelayConfig(mailbox_ttl=args.ttl_days * DAY, mailbox_quota=args.quota)
    relay = Relay(store, config)
    host, port = args.listen

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve, relay, host, port, tls)
            log.info("e2e-relay listening on %s (db %s%s)", _bound(listeners), args.db,
                     ", TLS" if tls else "")

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"e2e-relay: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Running a server program: ``HOST:PORT`` options, TLS, listeners and the ``serve`` command.

Shared by ``e2e-relay`` (:mod:`server.relay.main`) and ``e2e-social``
(:mod:`server.social.main`); each program keeps its own store, server object and options.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import trio

from .blobs import DAY, BlobLimits


class StreamServer(Protocol):
    """A server that serves one client stream at a time per call."""

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes."""
        ...


class Store(Protocol):
    """A server's database, closed when the program ends."""

    def close(self) -> None:
        """Close the database."""
        ...


StoreT = TypeVar("StoreT", bound=Store)
ServerT = TypeVar("ServerT", bound=StreamServer)


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to a pair; :class:`argparse.ArgumentTypeError` when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def positive_number(text: str) -> float:
    """A finite number above 0; :class:`argparse.ArgumentTypeError` otherwise (a rate of 0
    would refuse forever after the first, with a wait that never ends)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def add_serve_arguments(serve: argparse.ArgumentParser, port: int, db: str | None,
                        registrations_per_hour: float) -> None:
    """The options every server's ``serve`` command has: --listen, --db (unless ``db`` is None:
    the server names its store itself), --tls-cert/--tls-key, --registrations-per-hour
    (``registrations_per_hour``: the server's default)."""
    serve.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", port),
                       metavar="HOST:PORT", help=f"address to listen on (default "
                       f"127.0.0.1:{port}; port 0 picks a free port)")
    if db is not None:
        serve.add_argument("--db", default=db, help=f"SQLite database file (default {db})")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate chain")
    serve.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert")
    serve.add_argument("--registrations-per-hour", type=positive_number, metavar="N",
                       default=registrations_per_hour,
                       help=f"accounts one source address (an IPv6 /64) may register an hour, "
                       f"up to N at once (default {registrations_per_hour:g}); raise it when "
                       "many users share one address (a proxy, a NAT) or for a load test")


def add_blob_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of a server's blob store: --blob-dir, --blob-quota-mib, --blob-ttl-days."""
    serve.add_argument("--blob-dir", metavar="DIR", help="folder of the encrypted files "
                       "(default: NAME-blobs beside the database NAME.db)")
    serve.add_argument("--blob-quota-mib", type=float, default=1024.0, metavar="MIB",
                       help="MiB of encrypted files one account may hold at once (default 1024)")
    serve.add_argument("--blob-ttl-days", type=float, default=30.0, metavar="DAYS",
                       help="days an encrypted file is kept (default 30)")


def blob_limits(args: argparse.Namespace) -> BlobLimits:
    """The :class:`BlobLimits` the options of :func:`add_blob_arguments` ask for."""
    return BlobLimits(quota=int(args.blob_quota_mib * 2**20), ttl=args.blob_ttl_days * DAY)


async def serve(server: StreamServer, host: str, port: int, tls: ssl.SSLContext | None = None,
                task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
                *, background: Sequence[Callable[[], Awaitable[Any]]] = ()) -> None:
    """Listen on ``host:port`` and serve until cancelled; reports the listeners when ready.

    The ``background`` tasks run alongside and are cancelled with the listeners.
    """
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
        for task in background:
            nursery.start_soon(task)
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)


def bound_address(listeners: list) -> str:
    """``HOST:PORT`` of the first listener (for the start-up log line)."""
    listener = listeners[0]
    socket_listener = listener.transport_listener if isinstance(
        listener, trio.SSLListener) else listener
    host, port = socket_listener.socket.getsockname()[:2]
    return f"{host}:{port}"


def opening(open_store: Callable[[], StoreT], make_server: Callable[[StoreT], ServerT]
            ) -> Callable[[], AbstractAsyncContextManager[ServerT]]:
    """What :func:`run_serve_command` opens for a server on a synchronous store: the store
    (closed on the way out) and the server built on it."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[ServerT]:
        store = open_store()
        try:
            yield make_server(store)
        finally:
            store.close()

    return opened


def run_serve_command(prog: str, args: argparse.Namespace, log: logging.Logger,
                      open_server: Callable[[], AbstractAsyncContextManager[ServerT]],
                      serve_server: Callable[..., Awaitable[None]], store_name: str) -> int:
    """Run ``PROG serve`` until interrupted; the exit code (2: bad set-up, 1: cannot listen).

    Loads the TLS certificate, then inside trio opens the server and its store with
    ``open_server()`` (``store_name`` names the store in messages) and runs
    ``serve_server(server, host, port, tls)`` (a :func:`serve`-like task); the store is closed
    however the run ends. Every failure is one line on stderr.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print(f"{prog}: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"{prog}: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 2
    host, port = args.listen

    async def run() -> int:
        async with contextlib.AsyncExitStack() as stack:
            try:
                server = await stack.enter_async_context(open_server())
            except Exception as exc:  # unreadable path, not a database, no Redis there, ...
                print(f"{prog}: cannot open {store_name}: {exc}", file=sys.stderr)
                return 2
            refused: OSError | None = None
            try:
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(serve_server, server, host, port, tls)
                    log.info("%s listening on %s (store %s%s)", prog, bound_address(listeners),
                             store_name, ", TLS" if tls else "")
            except* OSError as group:  # the nursery wraps it: the address is in use, ...
                refused = group.exceptions[0]  # type: ignore[assignment]
            if refused is not None:
                print(f"{prog}: cannot listen on {host}:{port}: {refused}", file=sys.stderr)
                return 1
        return 0

    try:
        return trio.run(run)
    except KeyboardInterrupt:
        return 0

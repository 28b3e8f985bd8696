"""The daemon: its accounts, its event hub and the method table, served on its transports.

:meth:`Daemon.call` is the one way a method runs, whatever the transport: the method is looked
up in :data:`~client.daemon.methods.TABLE`, its parameters checked against its schema, and its
handler run; anything the handler raises becomes a JSON-RPC error with a one-line message (the
line ``e2e-chat`` prints for the same failure), and a bug is logged and answered -32603 without
stopping the daemon. :func:`serve` runs the accounts and the listeners: the Unix socket always,
TCP and HTTP when asked.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import trio

from e2e_proto.capabilities import PRIVATE, UnsupportedFeatureError

from ..cli import between
from ..cli.common import first_leaf, user_error_line
from ..cli.private import check_command
from ..cli.social import unavailable
from ..core.connection import ConnectionLost, ServerError
from ..social.errors import SocialError
from .accounts import Account
from .config import DaemonConfig
from .connections import CallContext, LineClient
from .events import Event, ring_event
from .hub import EventHub
from .jsonrpc import Call, Codes, RpcError, encode, error_body, result_body
from .methods import TABLE
from .table import Method, check_params

log = logging.getLogger("e2e.daemon")


def _version() -> str:
    try:
        return version("e2e-proto")
    except PackageNotFoundError:
        return "unknown"


class Daemon:
    """One home's daemon: ``accounts`` by transport, the ``hub`` of its event queue."""

    def __init__(self, home: Path, hub: EventHub, accounts: dict[str, Account[Any, Any]],
                 config: DaemonConfig | None = None, token: str | None = None) -> None:
        self.home = home
        self.hub = hub
        self.accounts = accounts
        self.config = config or DaemonConfig()
        self.token = token
        """The bearer token TCP and HTTP clients must present (None: neither is served)."""
        self.clients = 0

    @property
    def default_transport(self) -> str:
        """The transport of calls that name none: the home's only one, or private."""
        return PRIVATE if PRIVATE in self.accounts or not self.accounts else next(
            iter(self.accounts))

    async def answer(self, context: CallContext, call: Call) -> dict[str, Any] | None:
        """Run ``call``; its answer, or None for a notification (never answered)."""
        try:
            body = result_body(call.id, await self.call(context, call.method, call.params))
        except RpcError as exc:
            body = error_body(call.id, exc.code, str(exc), exc.data)
        return None if call.notification else body

    async def call(self, context: CallContext, name: str, params: dict[str, Any]) -> Any:
        """Run the method ``name``; :class:`RpcError` for any refusal."""
        method = TABLE.get(name)
        if method is None:
            raise RpcError(Codes.METHOD_NOT_FOUND, f"method not found: {name[:64]!r}")
        if not context.client.authenticated and name != "auth":
            raise RpcError(Codes.UNAUTHORIZED, "unauthorized: call auth with the token in "
                           f"{self.home / 'daemon.token'} first")
        checked = check_params(method, params)
        if method.daemon is not None:
            return await method.daemon(context, checked)
        transport = checked.pop("transport") or self.default_transport
        account = self.accounts.get(transport)
        if account is None:
            raise RpcError(Codes.NO_TRANSPORT, f"this home has no {transport} account for the "
                           "daemon to use", {"transport": transport})
        try:
            handler = method.on.get(transport)
            if handler is None:
                _refuse(transport, method)
            return await handler(account, checked)  # type: ignore[misc]
        except Exception as exc:  # every failure is an answer; the daemon keeps serving
            raise rpc_error(exc, account.server) from None

    async def ringing(self) -> list[Event]:
        """A ``call_ring`` event for each call ringing now on each connected account (a new
        subscription's first events); none from a server that cannot say."""
        rings: list[Event] = []
        for account in self.accounts.values():
            if account.live is None:
                continue
            try:
                shown = await account.live.ringing_notices()
            except ConnectionLost:
                continue
            rings += [ring for ring in map(ring_event, shown) if ring is not None]
        return rings

    def info(self) -> dict[str, Any]:
        """What ``daemon_info`` returns."""
        return {"version": _version(), "home": str(self.home),
                "transports": {name: account.info() for name, account in self.accounts.items()},
                "queued": self.hub.queue.pending_count, "full": self.hub.full,
                "subscriptions": len(self.hub.subscriptions), "clients": self.clients}

    async def serve_stream(self, stream: trio.abc.Stream, peer: str,
                           authenticated: bool) -> None:
        """Serve one client connection (refused past ``max_clients``); never raises."""
        if self.clients >= self.config.max_clients:
            with trio.move_on_after(self.config.write_timeout):
                try:
                    await stream.send_all(encode(error_body(
                        None, Codes.OVERLOADED, f"the daemon serves {self.config.max_clients} "
                        "clients already")))
                except trio.BrokenResourceError:
                    pass
            await trio.aclose_forcefully(stream)
            return
        self.clients += 1
        try:
            await LineClient(self, stream, peer, authenticated).serve()
        except Exception:  # a bug serving one client must not stop the others
            log.exception("serving %s failed", peer)
        finally:
            self.clients -= 1


def _refuse(transport: str, method: Method) -> None:
    """Refuse a method the transport does not have, as its ``e2e-chat`` command would."""
    command, _, action = (method.command or method.name).partition(" ")
    if command in between.COMMANDS:
        between.check_transport(transport, command, action or None)
    if transport == PRIVATE:
        check_command(command)
        raise RpcError(Codes.UNSUPPORTED, f"'{command}' is not available on the private "
                       "transport")
    raise unavailable(command)


def rpc_error(error: BaseException, server: str) -> RpcError:
    """The JSON-RPC error of a handler's failure (``server`` names the server in a refusal)."""
    leaf = first_leaf(error)
    if isinstance(leaf, RpcError):
        return leaf
    line = user_error_line(leaf, server)
    if line is None:
        log.error("a call failed", exc_info=error)
        return RpcError(Codes.INTERNAL_ERROR, "internal error: see the daemon's log")
    if isinstance(leaf, SocialError):
        return RpcError(Codes.SERVER_REFUSED, line, {"server_code": leaf.code})
    if isinstance(leaf, ServerError):
        return RpcError(Codes.SERVER_REFUSED, line, {"server_code": leaf.code})
    if isinstance(leaf, ConnectionLost):
        return RpcError(Codes.UNREACHABLE, line)
    if isinstance(leaf, UnsupportedFeatureError):
        return RpcError(Codes.UNSUPPORTED, line)
    return RpcError(Codes.USER_ERROR, line)


async def serve_unix(daemon: Daemon, path: Path,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the Unix socket at ``path`` (mode 0600; a stale file is replaced)."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    umask = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    task_status.started()

    async def handle(stream: trio.SocketStream) -> None:
        await daemon.serve_stream(stream, "unix", authenticated=True)

    try:
        await trio.serve_listeners(handle, [trio.SocketListener(sock)])
    finally:
        path.unlink(missing_ok=True)


async def serve_tcp(daemon: Daemon, host: str, port: int,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve newline-delimited JSON-RPC on TCP (port 0: any free port, given to
    ``task_status``); clients must ``auth`` first."""
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "tcp"
        await daemon.serve_stream(stream, peer, authenticated=False)

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def serve(daemon: Daemon, unix: Path, tcp: tuple[str, int] | None = None,
                http: tuple[str, int] | None = None) -> None:
    """Run the accounts and every listener until SIGTERM or SIGINT (or cancellation)."""
    async with trio.open_nursery() as nursery:
        for account in daemon.accounts.values():
            nursery.start_soon(account.run)
        await nursery.start(serve_unix, daemon, unix)
        log.info("listening on %s", unix)
        if tcp is not None:
            port = await nursery.start(serve_tcp, daemon, *tcp)
            log.info("listening on tcp %s:%d", tcp[0], port)
        if http is not None:
            from .http import serve_http  # only a daemon serving HTTP imports its libraries

            port = await nursery.start(serve_http, daemon, *http)
            log.info("listening on http://%s:%d (POST /rpc, GET /events)", http[0], port)
        log.info("ready: serving %s (%s)", daemon.home, ", ".join(sorted(daemon.accounts)))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                log.info("stopping")
                nursery.cancel_scope.cancel()
                return

"""The daemon over HTTP: a small Starlette app served by Hypercorn's trio worker.

``POST /rpc`` takes one JSON-RPC request or a batch and answers it (204 when every call was a
notification); ``GET /events`` is a subscription as server-sent events (``id:`` the event id to
``ack``, ``event:`` its name, ``data:`` its parameters), ending when the client goes away or
stops reading for ``write_timeout`` seconds; ``GET /check`` answers 200 while the daemon runs.
Every route but ``/check`` needs ``Authorization: Bearer TOKEN`` (``HOME/daemon.token``). A body
is capped at ``max_http_body`` bytes, and each client host is rate-limited as one socket client
is (by its address alone: every connection has a new port).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from shared.rate_limits import TokenBuckets

from .connections import CallContext, RpcClient
from .hub import Subscription
from .jsonrpc import Codes, encode, error_body, parse_line
from .server import Daemon

log = logging.getLogger("e2e.daemon")


def _authorized(daemon: Daemon, headers: Any) -> bool:
    given = headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return (daemon.token is not None and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), daemon.token.encode()))


def _refusal(code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse(error_body(None, code, message), status_code=status)


class RpcEndpoint:
    """``POST /rpc``."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._rates = TokenBuckets[str](daemon.config.requests_per_second,
                                        daemon.config.request_burst)

    async def handle(self, request: Request) -> Response:
        """Answer one request or batch."""
        config = self.daemon.config
        if not _authorized(self.daemon, request.headers):
            return _refusal(Codes.UNAUTHORIZED, "unauthorized: send Authorization: Bearer "
                            "with the token in HOME/daemon.token", 401)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_http_body:
                return _refusal(Codes.LINE_TOO_LONG, "a body longer than "
                                f"{config.max_http_body} bytes", 413)
        parsed = parse_line(bytes(body), config.max_batch)
        answers = list(parsed.errors)
        host = request.client.host if request.client else ""
        if parsed.calls and not self._rates.take(host, len(parsed.calls)):
            return _refusal(Codes.RATE_LIMITED, "rate limited: at most "
                            f"{config.requests_per_second:g} requests a second from one host",
                            429)
        context = CallContext(self.daemon, RpcClient(self.daemon, authenticated=True))
        for call in parsed.calls:
            answer = await self.daemon.answer(context, call)
            if answer is not None:
                answers.append(answer)
        if not answers:
            return Response(status_code=204)
        return Response(encode(answers if parsed.batch else answers[0]),
                        media_type="application/json")


class EventsEndpoint:
    """``GET /events``: one subscription as a stream of server-sent events."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream events until the client leaves or stops reading."""
        daemon = self.daemon
        if not _authorized(daemon, Request(scope).headers):
            response = _refusal(Codes.UNAUTHORIZED, "unauthorized: send Authorization: "
                                "Bearer with the token in HOME/daemon.token", 401)
            await response(scope, receive, send)
            return
        if daemon.clients >= daemon.config.max_clients:
            await _refusal(Codes.OVERLOADED, "the daemon serves "
                           f"{daemon.config.max_clients} clients already", 503)(
                scope, receive, send)
            return
        daemon.clients += 1
        subscription: Subscription | None = None
        try:
            rings = await daemon.ringing()  # asked first: they come before the queue
            subscription = daemon.hub.subscribe()
            subscription.push_events(rings)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]})
            async with trio.open_nursery() as nursery:
                async def deliver(notification: dict[str, Any]) -> None:
                    with trio.move_on_after(daemon.config.write_timeout) as timer:
                        await send({"type": "http.response.body", "more_body": True,
                                    "body": server_sent_event(notification)})
                    if timer.cancelled_caught:
                        log.warning("an HTTP subscriber was cut off: it did not read")
                        nursery.cancel_scope.cancel()

                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                await subscription.run(deliver)
        finally:
            if subscription is not None:
                subscription.close()
            daemon.clients -= 1


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def server_sent_event(notification: dict[str, Any]) -> bytes:
    """A notification as one server-sent event (``id:`` only for queued events)."""
    params = notification["params"]
    event_id = params.get("event_id")
    head = f"id: {event_id}\n" if event_id is not None else ""
    data = json.dumps(params, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {notification['method']}\ndata: {data}\n\n".encode()


async def _check(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(daemon: Daemon) -> Starlette:
    """The daemon's HTTP app, over ``daemon`` (tests build it with a real one)."""
    return Starlette(routes=[
        Route("/rpc", RpcEndpoint(daemon).handle, methods=["POST"]),
        Route("/events", EventsEndpoint(daemon), methods=["GET"]),
        Route("/check", _check, methods=["GET"]),
    ])


async def serve_http(daemon: Daemon, host: str, port: int,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve :func:`build_app` on ``host:port`` (0: any free port, given to ``task_status``)."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, build_app(daemon), config)
        task_status.started(int(binds[0].rsplit(":", 1)[1]))

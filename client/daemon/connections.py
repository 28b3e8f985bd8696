"""One client of the daemon on a stream (the Unix socket or TCP): JSON-RPC lines in and out.

Each client is bounded on its own, so that a bad one never affects another: a line longer than
the cap is answered -32000 and the connection closed; requests beyond the client's rate are
answered -32001 without running; at most ``calls_per_client`` calls run at once (further lines
wait in the socket); answers and events wait in a bounded buffer, and a client that lets it
fill, or does not read for ``write_timeout`` seconds, is cut off. A TCP client must present the
bearer token (``auth``) within ``auth_timeout`` seconds. When a client closes its side, the calls
it sent are still answered, then the connection closes; its subscriptions end at once.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from shared.rate_limits import TokenBucket

from .hub import Subscription
from .jsonrpc import (
    Call,
    Codes,
    LineBuffer,
    LineTooLong,
    RpcError,
    encode,
    error_body,
    parse_line,
)

if TYPE_CHECKING:
    from .server import Daemon

log = logging.getLogger("e2e.daemon")

READ_SIZE = 65536


class RpcClient:
    """What a method may ask of the client calling it: subscriptions and authentication."""

    can_subscribe = False

    def __init__(self, daemon: Daemon, authenticated: bool) -> None:
        self.daemon = daemon
        self.authenticated = authenticated

    def authenticate(self, token: str) -> None:
        """Accept the client if ``token`` is the daemon's bearer token (-32002 otherwise, and
        always when the daemon has none)."""
        expected = self.daemon.token
        if expected is None:
            raise RpcError(Codes.UNAUTHORIZED, "unauthorized: this daemon has no token (it "
                           "serves neither TCP nor HTTP)")
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise RpcError(Codes.UNAUTHORIZED, "unauthorized: wrong token")
        self.authenticated = True

    def subscribe(self) -> Subscription:
        """A new subscription whose events this client is sent."""
        raise RpcError(Codes.METHOD_NOT_FOUND, "subscriptions need a connection that stays open")

    def unsubscribe(self, subscription: int | None) -> list[int]:
        """End one (or, with None, every) subscription of this client; the ids ended."""
        raise RpcError(Codes.NOT_SUBSCRIBED, "this connection has no subscription")


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a daemon-level handler gets: the daemon and the calling client."""

    daemon: Daemon
    client: RpcClient


class LineClient(RpcClient):
    """A client speaking newline-delimited JSON-RPC over a stream."""

    can_subscribe = True

    def __init__(self, daemon: Daemon, stream: trio.abc.Stream, peer: str,
                 authenticated: bool) -> None:
        super().__init__(daemon, authenticated)
        self.stream = stream
        self.peer = peer
        config = daemon.config
        self._send, self._outbox = trio.open_memory_channel[bytes](config.send_buffer)
        self._calls = trio.Semaphore(config.calls_per_client)
        self._bucket = TokenBucket(config.requests_per_second, config.request_burst)
        self._subscriptions: dict[int, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._cut = trio.CancelScope()

    async def serve(self) -> None:
        """Serve the client until it closes, is cut off, or the daemon stops; never raises for
        the client's bytes."""
        try:
            with self._cut:
                async with trio.open_nursery() as outer:
                    outer.start_soon(self._write)
                    if not self.authenticated:
                        outer.start_soon(self._auth_deadline)
                    async with trio.open_nursery() as calls:
                        self._nursery = calls
                        await self._read()
                        self._end_subscriptions()
                    self._send.close()  # the writer sends what is left, then ends
                    outer.cancel_scope.deadline = trio.current_time() + (
                        self.daemon.config.write_timeout)
        finally:
            self._end_subscriptions()
            await trio.aclose_forcefully(self.stream)

    def cut_off(self, reason: str) -> None:
        """Drop the client now (it does not read, or broke a limit)."""
        log.warning("client %s cut off: %s", self.peer, reason)
        self._cut.cancel()

    def send(self, message: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Queue one line to the client; cuts it off when its buffer is full."""
        try:
            self._send.send_nowait(encode(message))
        except trio.WouldBlock:
            self.cut_off("its send buffer is full (it does not read)")
        except trio.ClosedResourceError:
            pass

    async def _write(self) -> None:
        async for data in self._outbox:
            with trio.move_on_after(self.daemon.config.write_timeout) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._cut.cancel()
                    return
            if scope.cancelled_caught:
                self.cut_off(f"it did not read for {self.daemon.config.write_timeout:g} s")
                return
        self._cut.cancel()  # everything answered after the client closed its side

    async def _auth_deadline(self) -> None:
        await trio.sleep(self.daemon.config.auth_timeout)  # a deadline, not synchronisation
        if not self.authenticated:
            self.send(error_body(None, Codes.UNAUTHORIZED, "unauthorized: no auth within "
                                 f"{self.daemon.config.auth_timeout:g} s"))
            self._send.close()

    async def _read(self) -> None:
        """Read lines and start their calls until the client closes its side or a line is
        too long."""
        lines = LineBuffer(self.daemon.config.max_line_bytes)
        while True:
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            lines.feed(data)
            try:
                while (line := lines.next_line()) is not None:
                    if line.strip():
                        await self._line(line)
            except LineTooLong as exc:
                self.send(error_body(None, Codes.LINE_TOO_LONG, f"{exc}: the connection is "
                                     "closed"))
                await self._discard()
                return

    async def _discard(self) -> None:
        """Read and drop what the client is still sending (for at most ``write_timeout``
        seconds), so that closing does not reset the connection before it reads the error."""
        with trio.move_on_after(self.daemon.config.write_timeout):
            try:
                while await self.stream.receive_some(READ_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _line(self, line: bytes) -> None:
        parsed = parse_line(line, self.daemon.config.max_batch)
        answers: list[dict[str, Any]] = list(parsed.errors)
        calls = parsed.calls
        if calls and not self._bucket.take(len(calls)):
            answers += [error_body(c.id, Codes.RATE_LIMITED, "rate limited: at most "
                                   f"{self.daemon.config.requests_per_second:g} requests a "
                                   "second") for c in calls if not c.notification]
            calls = []
        if not calls:
            if answers:
                self.send(answers if parsed.batch else answers[0])
            return
        assert self._nursery is not None
        await self._calls.acquire()
        self._nursery.start_soon(self._run_line, calls, answers, parsed.batch)

    async def _run_line(self, calls: list[Call], answers: list[dict[str, Any]],
                        batch: bool) -> None:
        try:
            for call in calls:
                answer = await self.daemon.answer(CallContext(self.daemon, self), call)
                if answer is not None:
                    answers.append(answer)
        finally:
            self._calls.release()
        if answers:
            self.send(answers if batch else answers[0])

    def subscribe(self) -> Subscription:
        """A new subscription whose events are sent on this connection."""
        subscription = self.daemon.hub.subscribe()
        scope = trio.CancelScope()
        self._subscriptions[subscription.id] = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._run_subscription, subscription, scope)
        return subscription

    async def _run_subscription(self, subscription: Subscription,
                                scope: trio.CancelScope) -> None:
        async def deliver(notification: dict[str, Any]) -> None:
            self.send(notification)

        with scope:
            await subscription.run(deliver)
        subscription.close()
        self._subscriptions.pop(subscription.id, None)

    def unsubscribe(self, subscription: int | None) -> list[int]:
        """End one (or, with None, every) subscription of this connection."""
        if subscription is None:
            ended = sorted(self._subscriptions)
        elif subscription in self._subscriptions:
            ended = [subscription]
        else:
            raise RpcError(Codes.NOT_SUBSCRIBED, f"no subscription {subscription} on this "
                           "connection")
        for each in ended:
            self._subscriptions.pop(each).cancel()
        return ended

    def _end_subscriptions(self) -> None:
        for scope in self._subscriptions.values():
            scope.cancel()
        self._subscriptions.clear()


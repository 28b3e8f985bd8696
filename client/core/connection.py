"""A trio connection to a server speaking e2e-proto frames: requests, responses and pushes.

:func:`open_connection` yields a :class:`Connection` whose reader task matches responses to
requests by ``id`` and queues server pushes (frames without ``id``) on :attr:`Connection.pushes`.
:class:`ServerClient` is what the relay's and the social server's clients have in common.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

from e2e_proto.errors import E2EProtoError
from e2e_proto.prekey_rotation import DEFAULT_POLICY, SignedPreKeyPolicy
from e2e_proto.primitives import RandomSource, system_random
from e2e_proto.wire import FrameDecoder, encode_frame


class ConnectionLost(Exception):
    """The server closed the connection or could not be reached."""


class RequestTimeout(ConnectionLost):
    """The server did not answer a request within the connection's request timeout."""


DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds a client waits for the answer to one request (``e2e-chat --timeout``)."""


class ServerError(Exception):
    """The server refused a request: ``code`` says why (see :mod:`e2e_proto.relay_api`)."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class Connection:
    """Request/response over one stream; pushes arrive on :attr:`pushes`.

    Each request waits at most ``request_timeout`` seconds for its answer
    (:class:`RequestTimeout`): a server that stops answering never hangs a client.
    """

    def __init__(self, stream: trio.abc.Stream,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.stream = stream
        self.request_timeout = request_timeout
        self._next_id = 1
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._push_send, self.pushes = trio.open_memory_channel[dict[str, Any]](1000)
        self._send_lock = trio.Lock()
        self._closed = False

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its response; :class:`ServerError` on an error frame."""
        return await (await self.submit(kind, **fields)).response()

    async def submit(self, kind: str, **fields: Any) -> PendingRequest:
        """Send a request and return without waiting: ``await pending.response()`` later.

        Several requests in flight share one round trip (a pipelined transfer); the server
        answers each connection's requests in order.
        """
        if self._closed:
            raise ConnectionLost("the connection is closed")
        request_id = self._next_id
        self._next_id += 1
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        sent = False
        try:
            with trio.move_on_after(self.request_timeout):
                async with self._send_lock:
                    await self.stream.send_all(encode_frame({"id": request_id, "type": kind,
                                                             **fields}))
                sent = True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._waiting.pop(request_id, None)
            raise ConnectionLost("the server closed the connection") from None
        except BaseException:
            self._waiting.pop(request_id, None)
            raise
        if not sent:
            self._waiting.pop(request_id, None)
            raise RequestTimeout(_timeout_message(kind, self.request_timeout))
        return PendingRequest(self._waiting, request_id, receive, kind, self.request_timeout)

    async def read_loop(self) -> None:
        """Read frames until the stream ends; then fail every pending request."""
        decoder = FrameDecoder()
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                decoder.feed(data)
                while (frame := decoder.next_frame()) is not None:
                    await self._dispatch(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, E2EProtoError):
            pass
        finally:
            self._closed = True
            for channel in list(self._waiting.values()):
                channel.close()
            self._push_send.close()

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("id")
        if request_id is not None and type(request_id) is not int:
            return  # no request of ours has such an id: nothing waits for it
        if request_id is None:
            if "error" in frame:  # a connection-level error: the server is about to close
                error = frame["error"] if isinstance(frame["error"], dict) else {}
                frame = {"type": "error", **error}
            await self._push_send.send(frame)
            return
        channel = self._waiting.get(request_id)
        if channel is not None:
            with contextlib.suppress(trio.WouldBlock):  # a second answer to one id: dropped
                channel.send_nowait(frame)


def _timeout_message(kind: str, timeout: float) -> str:
    return f"the server did not answer a {kind!r} request within {timeout:g} seconds"


class PendingRequest:
    """A request sent by :meth:`Connection.submit` whose response is awaited later.

    Awaiting the response waits at most the connection's request timeout
    (:class:`RequestTimeout`).
    """

    def __init__(self, waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]],
                 request_id: int, receive: trio.MemoryReceiveChannel[dict[str, Any]],
                 kind: str, timeout: float) -> None:
        self._waiting = waiting
        self._id = request_id
        self._receive = receive
        self._kind = kind
        self._timeout = timeout

    async def response(self) -> dict[str, Any]:
        """The response; :class:`ServerError` on an error frame, :class:`ConnectionLost`,
        :class:`RequestTimeout` when the server does not answer in time."""
        response: dict[str, Any] | None = None
        try:
            with trio.move_on_after(self._timeout):
                response = await self._receive.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
            raise ConnectionLost("the server closed the connection") from None
        finally:
            self.discard()
        if response is None:
            raise RequestTimeout(_timeout_message(self._kind, self._timeout))
        error = response.get("error")
        if error is not None:
            if not isinstance(error, dict):
                error = {}
            raise ServerError(str(error.get("code", "unknown")),
                              str(error.get("message", "request refused")), error)
        return response

    def discard(self) -> None:
        """Stop waiting for the response (it is dropped when it arrives)."""
        self._waiting.pop(self._id, None)


def client_tls_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """TLS settings for a client: verify against ``ca_file`` (or the system's CAs).

    ``insecure`` turns verification off: for local development only.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionLost(f"cannot load the CA file {ca_file}: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.asynccontextmanager
async def open_connection(host: str, port: int, tls: ssl.SSLContext | None = None,
                          request_timeout: float = DEFAULT_REQUEST_TIMEOUT
                          ) -> AsyncIterator[Connection]:
    """Connect, start the reader, yield the connection; closes it on exit."""
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectionLost(f"cannot reach the server at {host}:{port} ({exc.strerror or exc})"
                             ) from None
    if tls is not None:
        stream = trio.SSLStream(stream, tls, server_hostname=host)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            await trio.aclose_forcefully(stream)
            reason = exc.__cause__ if exc.__cause__ is not None else exc
            raise ConnectionLost(f"TLS with {host}:{port} failed: {reason}") from None
    connection = Connection(stream, request_timeout)
    try:
        async with reader_running(connection.read_loop):
            yield connection
    finally:
        await trio.aclose_forcefully(stream)


@contextlib.asynccontextmanager
async def reader_running(read_loop: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run ``read_loop`` (a reader that never raises) beside the body, cancelled when the body
    ends; the body's exception comes out as itself, not in an exception group, so callers catch
    :class:`ServerError` and :class:`ConnectionLost` directly."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_loop)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the reader never raises: the body's one exception
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


StateT = TypeVar("StateT")


class ServerClient(Generic[StateT]):
    """A device's client for one server: its local ``state``, the server's address and TLS.

    ``clock`` gives the time (seconds since the epoch) for timestamps and for the signed-prekey
    schedule ``prekey_policy`` (weekly rotation by default).
    """

    def __init__(self, state: StateT, host: str, port: int,
                 tls: ssl.SSLContext | None = None, random: RandomSource = system_random,
                 clock: Callable[[], float] = time.time,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 prekey_policy: SignedPreKeyPolicy = DEFAULT_POLICY) -> None:
        self.state = state
        self.host, self.port, self.tls = host, port, tls
        self.request_timeout = request_timeout
        self.random = random
        self.clock = clock
        self.prekey_policy = prekey_policy

    def open_connection(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A new connection to the server (:func:`open_connection`)."""
        return open_connection(self.host, self.port, self.tls, self.request_timeout)

"""Per-connection plumbing shared by the relay and the social server: code only, no state.

:class:`FrameConnection` serves one client stream: it reads e2e-proto frames (a frame must
complete within ``frame_timeout`` of its first byte), answers each request through a dispatch
table, refuses with error frames (:class:`~server.common.requests.RequestError`), rate-limits
with a token bucket and pushes deliveries once the client has authenticated. Until then the
connection holds one of the server's limited places for unauthenticated connections (overall
and per source address) and may send only small frames. Each server subclasses it with its own
route tables and its own error-code vocabulary; the two servers share no process, database,
credentials or connection objects.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import trio

from e2e_proto.address import Address
from e2e_proto.constants import MAX_FRAME_SIZE
from e2e_proto.errors import FrameTooLargeError, RemoteProtocolError, describe
from e2e_proto.unpack import FRAME_LIMITS, UnpackLimits
from e2e_proto.wire import FrameDecoder, encode_frame
from shared.rate_limits import TokenBucket

from .requests import ErrorCodes, Handler, RequestError, RouteTable
from .slots import Slots, source_of
from .store_base import StoreUnavailableError


class Sequenced(Protocol):
    """Something delivered in order: a stored message or an event."""

    @property
    def seq(self) -> int:
        """Its position in the device's delivery order."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits every server's connections share; each server's config extends it."""

    max_frame_size: int = MAX_FRAME_SIZE
    """The largest frame accepted, in bytes."""
    max_unauthenticated_frame_size: int = MAX_FRAME_SIZE
    """The largest frame accepted before authentication, in bytes: each server sets the size of
    its largest request before authentication, computed in its API module."""
    max_unauthenticated_connections: int = 2048
    """Connections not authenticated yet, overall; each may hold a partial frame of
    ``max_unauthenticated_frame_size`` bytes for ``auth_timeout`` seconds. Past it a new
    connection gets ``too_many_connections`` and is closed."""
    max_unauthenticated_per_address: int = 256
    """Connections not authenticated yet, per source address (an IPv6 /64): room for hundreds
    of clients behind one NAT connecting at once (the load test's 220 devices on one
    address)."""
    requests_per_second: float = 200.0
    """The per-connection request rate."""
    request_burst: int = 400
    """The per-connection request burst."""
    auth_timeout: float = 30.0
    """Seconds a connection may take to authenticate."""
    frame_timeout: float = 30.0
    """Seconds a frame may take to arrive, counted from its first byte (later bytes do not
    extend it)."""
    delivery_batch: int = 100
    """How many deliveries are read from the store at once."""

    @property
    def request_limits(self) -> UnpackLimits:
        """What one request frame may hold (msgpack lengths and containers); each server
        derives its own from its API."""
        return FRAME_LIMITS


HANDED_DELIVERIES = 64
"""Deliveries handed to a connection (:meth:`FrameConnection.wake`) that it keeps until its
delivery loop takes them; past it, it drops them all and reads the store instead."""

DELIVERY_WRITE_SIZE = 64 * 1024
"""Delivery frames are written together up to about this many bytes per write."""

_WAITING = {"total": "wait", "address": "from this address wait"}
"""How a refusal names the full cap of :attr:`ConnectionRegistry.unauthenticated`."""

KeyT = TypeVar("KeyT")
ConnectionT = TypeVar("ConnectionT", bound="FrameConnection")


class ConnectionRegistry(Generic[KeyT, ConnectionT]):
    """A server's authenticated connections by key (address or account), for pushes, and the
    places of the connections that have not authenticated yet."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self._online: dict[KeyT, set[ConnectionT]] = {}
        self.unauthenticated = Slots(limits.max_unauthenticated_connections,
                                     address=limits.max_unauthenticated_per_address)
        """Connections not authenticated yet, overall and per source address."""

    def attach(self, key: KeyT, connection: ConnectionT) -> None:
        """Register an authenticated connection for pushes."""
        self._online.setdefault(key, set()).add(connection)

    def detach(self, key: KeyT, connection: ConnectionT) -> None:
        """Forget a connection."""
        connections = self._online.get(key)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self._online[key]


class FrameConnection(abc.ABC):
    """One client connection: frame parsing, request dispatch, error frames and deliveries.

    A subclass sets the class attributes (its API's codes, its logger, its route tables) and
    implements the hooks :meth:`detach`, :meth:`_auth_timed_out`, :meth:`_first_cursor`,
    :meth:`_pending` and :meth:`_delivery_frame`; the other hooks have neutral defaults.
    """

    codes: ClassVar[ErrorCodes]
    logger: ClassVar[logging.Logger]
    public_routes: ClassVar[RouteTable] = {}
    """What may be asked before authentication."""
    authenticated_routes: ClassVar[RouteTable] = {}
    """What may be asked after authentication."""
    authenticate_first: ClassVar[str] = "authenticate first"
    already_authenticated: ClassVar[str | None] = None
    """The refusal of a public-only request after authentication (None: "unknown request")."""

    def __init__(self, stream: trio.abc.Stream, peer: str, config: ConnectionLimits,
                 registry: ConnectionRegistry[Any, Any]) -> None:
        self.stream = stream
        self.peer = peer
        self.source = source_of(peer)
        """What per-address limits count: the peer's host (an IPv6 /64)."""
        self.limits = config
        self.frame_timeout = config.frame_timeout
        self._unauthenticated = registry.unauthenticated
        self._holds_place = False  # one of the registry's unauthenticated places
        # Until it authenticates, a connection may send only the server's largest such request.
        self.decoder = FrameDecoder(config.max_unauthenticated_frame_size, config.request_limits)
        self._frame_deadline = math.inf
        """When the incomplete frame in the decoder must be complete (inf: none is)."""
        self.address: Address | None = None
        self.bucket = TokenBucket(config.requests_per_second, config.request_burst)
        self._wakeup = trio.Event()
        self._handed: list[Sequenced] | None = None
        """Deliveries handed by :meth:`wake` since the loop last looked (None: it must read)."""
        self._send_lock = trio.Lock()
        self._closing = False
        self._farewell: tuple[str, str] | None = None  # (code, message) of end()
        self._nursery: trio.Nursery | None = None

    async def serve(self) -> None:
        """Serve until the client closes; never raises for the client's bytes, always closes."""
        log = self.logger
        log.info("connection from %s", self.peer)
        full = self._unauthenticated.take(address=self.source)
        if full is not None:
            await self._refuse(f"too many connections {_WAITING[full]} to authenticate; try "
                               "again later")
            return
        self._holds_place = True
        try:
            try:
                await self.run()
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away (a reset arrives inside the connection's nursery)
            except* StoreUnavailableError as group:  # deliveries cannot be read: reconnect later
                log.warning("connection from %s closed: storage unavailable: %s", self.peer,
                            group.exceptions[0])
        except Exception:  # a bug of ours: log it, drop this connection, keep serving others
            log.exception("internal error on connection from %s", self.peer)
        finally:
            self._leave_unauthenticated()
            with trio.CancelScope(shield=True):
                await self.detach()
            try:
                if self._farewell is not None:  # ended by end(): say why, briefly
                    with trio.move_on_after(1), contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._error(None, *self._farewell)
            finally:
                await trio.aclose_forcefully(self.stream)
                log.info("connection from %s closed", self.peer)

    async def _refuse(self, message: str) -> None:
        """Refuse a new connection with ``too_many_connections`` and close it."""
        self.logger.info("connection from %s refused: %s", self.peer, message)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._error(None, self.codes.too_many_connections, message)
        await trio.aclose_forcefully(self.stream)

    def end(self, code: str, message: str) -> None:
        """End this connection now, from another connection's task: nothing more is delivered
        to it, and the client gets an error frame with ``code`` before it is closed."""
        self._farewell = (code, message)
        self._closing = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def wake(self, handed: Sequenced | None = None) -> None:
        """New deliveries may be waiting: wake the delivery loop. ``handed`` is one just stored
        (durably), which the loop may push without reading the store if it continues the
        deliveries; None (deliveries it was not handed) makes it read."""
        buffered = self._handed
        if handed is None or buffered is None or len(buffered) >= HANDED_DELIVERIES:
            self._handed = None
        else:
            buffered.append(handed)
        self._wakeup.set()

    def end_after_answer(self) -> None:
        """End this connection once the request being handled is answered."""
        self._closing = True

    def _authenticated(self, address: Address) -> None:
        """Serve this connection as ``address`` from now on: full-size frames, and its place
        among the unauthenticated connections given back."""
        self.address = address
        self.decoder.max_size = self.limits.max_frame_size
        self._leave_unauthenticated()

    def _leave_unauthenticated(self) -> None:
        if self._holds_place:
            self._holds_place = False
            self._unauthenticated.give_back(address=self.source)

    async def send(self, frame: dict[str, Any]) -> None:
        """Write one frame (frames from concurrent tasks never interleave)."""
        await self._write(encode_frame(frame))

    @abc.abstractmethod
    async def detach(self) -> None:
        """Forget this connection at its server (it has ended; runs shielded, so it must
        finish by itself)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Authenticate within ``auth_timeout``, then serve requests and push deliveries."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._opening(nursery)
            ended = False  # the connection must end (possibly after a frame authenticated it)
            with trio.move_on_after(self.limits.auth_timeout) as auth_scope:
                while self.address is None and not ended:
                    deadline = self._auth_deadline()
                    if deadline is not None:
                        auth_scope.deadline = deadline
                    ended = not await self._read_and_handle()
            if auth_scope.cancelled_caught:
                await self._auth_timed_out()
            elif self.address is not None and not ended:
                nursery.start_soon(self._deliver_loop)
                while await self._read_and_handle():
                    pass
            nursery.cancel_scope.cancel()

    # -- hooks -------------------------------------------------------------------------------

    async def _opening(self, nursery: trio.Nursery) -> None:
        """What happens before the client may speak (nothing by default)."""
        return None

    def _auth_deadline(self) -> float | None:
        """A new deadline for authentication, or None to keep it (before each read)."""
        return None

    @abc.abstractmethod
    async def _auth_timed_out(self) -> None:
        """Log and tell the client that it did not authenticate in time."""
        raise NotImplementedError

    def _first_cursor(self) -> int:
        """The sequence number after which deliveries start."""
        return 0

    @abc.abstractmethod
    async def _pending(self, after: int) -> Sequence[Sequenced]:
        """Up to ``delivery_batch`` deliveries after ``after``, in order."""
        raise NotImplementedError

    @abc.abstractmethod
    def _delivery_frame(self, item: Any) -> dict[str, Any]:
        """The push frame of one delivery."""
        raise NotImplementedError

    # -- frames and requests -----------------------------------------------------------------

    async def _read_and_handle(self) -> bool:
        """Read and handle what arrives; False when the connection should end.

        A frame must complete within ``frame_timeout`` of its first byte (slow-loris defence):
        one deadline per frame, which later reads of the same frame do not move.
        """
        data = None
        if self._frame_deadline == math.inf:  # no frame begun: no deadline (nor its scope's cost)
            data = await self.stream.receive_some(65536)
        else:
            with trio.move_on_at(self._frame_deadline):
                data = await self.stream.receive_some(65536)
        if data is None:
            self.logger.info("connection from %s: a frame did not complete in time", self.peer)
            await self._error(None, self.codes.bad_request, "a frame did not complete in time")
            return False
        if not data:
            return False
        arrived = trio.current_time()
        try:
            self.decoder.feed(data)
            while (frame := self.decoder.next_frame()) is not None:
                self._frame_deadline = math.inf
                await self._handle(frame)
                if self._closing:
                    return False
            if self.decoder.buffered and self._frame_deadline == math.inf:
                self._frame_deadline = arrived + self.frame_timeout  # a frame began in this read
        except FrameTooLargeError as exc:
            self.logger.info("connection from %s: %s", self.peer, exc)
            before = " (before authentication)" if self.address is None else ""
            await self._error(None, self.codes.frame_too_large, f"{exc}{before}")
            return False
        except RemoteProtocolError as exc:
            self.logger.info("connection from %s: malformed frame", self.peer)
            await self._error(None, self.codes.bad_request, f"malformed frame: {exc}")
            return False
        return True

    async def _error(self, request_id: object, code: str, message: str,
                     **details: Any) -> None:
        error: dict[str, Any] = {"code": code, "message": message, **details}
        await self.send({"id": request_id if type(request_id) is int else None,
                         "error": error})

    async def _handle(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("id")
        kind = frame.get("type")
        try:
            if type(request_id) is not int:
                raise RequestError(self.codes.bad_request, "a request needs an integer id")
            if not self.bucket.take():
                raise RequestError(self.codes.rate_limited, "too many requests; slow down")
            result = await self._dispatch(kind, frame)
        except RequestError as exc:
            self.logger.info("request %s from %s refused: %s", describe(kind),
                             self.address or self.peer, exc.code)
            await self._error(request_id, exc.code, str(exc), **exc.details)
            return
        await self.send({"id": request_id, "ok": True, **result})

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> dict[str, Any]:
        """Run the handler of ``kind``; a subclass adds its own checks around this."""
        return await self._handler_for(kind)(self, frame)

    def _handler_for(self, kind: object) -> Handler:
        """The handler of ``kind`` in this state; :class:`RequestError` when there is none."""
        if type(kind) is not str:  # a list or map is unhashable: no table lookup for it
            raise RequestError(self.codes.bad_request, "a request type must be a string")
        table = self.public_routes if self.address is None else self.authenticated_routes
        route = table.get(kind)
        if route is None:
            if kind in self.authenticated_routes:
                raise RequestError(self.codes.not_authenticated, self.authenticate_first)
            if self.already_authenticated is not None and kind in self.public_routes:
                raise RequestError(self.codes.bad_request, self.already_authenticated)
            raise RequestError(self.codes.unsupported,
                               f"unknown request type {describe(kind)}")
        return route.handler

    async def _send_batch(self, batch: Sequence[Sequenced]) -> None:
        """Write the delivery frames of ``batch`` in order, as few writes of at most about
        ``DELIVERY_WRITE_SIZE`` bytes (one per message would cost a system call and a lock
        each; one for a whole batch of large envelopes would hold megabytes per connection)."""
        frames: list[bytes] = []
        size = 0
        for item in batch:
            frame = encode_frame(self._delivery_frame(item))
            frames.append(frame)
            size += len(frame)
            if size >= DELIVERY_WRITE_SIZE:
                await self._write(b"".join(frames))
                frames.clear()
                size = 0
        if frames:
            await self._write(b"".join(frames))

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def _deliver_loop(self) -> None:
        """Push the deliveries after the cursor in order; announce once a drained backlog.

        A batch shorter than ``delivery_batch`` held everything stored before it was read;
        whatever is stored later calls :meth:`wake`, whose event and hand-offs are renewed
        before each read. Deliveries handed over since then are pushed without reading when
        they are exactly the next seqs after the cursor, one by one (:meth:`_handed_after`);
        any other wake, or a gap, makes the loop read.
        """
        last = self._first_cursor()
        announced = False
        while True:
            self._wakeup = trio.Event()
            batch = self._handed_after(last)
            self._handed = []
            full = False
            if batch is None:
                batch = await self._pending(last)
                full = len(batch) >= self.limits.delivery_batch
            if batch:
                await self._send_batch(batch)
                last = batch[-1].seq
            if full:
                self._handed = None  # more is stored: read on
                continue
            if not announced:
                await self.send({"type": "queue_empty"})
                announced = True
            await self._wakeup.wait()

    def _handed_after(self, last: int) -> list[Sequenced] | None:
        """The handed deliveries, if those after ``last`` are exactly ``last`` + 1, + 2, ...
        in order (the ones up to ``last`` were read already); None when the store must be read
        instead (a wake without a hand-off, too many, a gap, or out of order)."""
        handed = self._handed
        if handed is None:
            return None
        batch = []
        for item in handed:
            if item.seq > last:
                if item.seq != last + 1:
                    return None
                batch.append(item)
                last += 1
        return batch

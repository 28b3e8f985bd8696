"""The server-to-server link as each server runs it: a client to the other, and a listener.

Each server connects to the other (:class:`PeerClient`) to ask its requests, and serves the
other's requests on its own peer listener (:func:`serve_peer`). Both ends authenticate with the
shared key (:mod:`.channel`). The client asks one request at a time and (re)connects on demand,
so a request made while the other server is down or the link is cut fails at once with
:class:`PeerUnavailable` (nothing is half done on this side), and the first request after it is
back connects again. Requests and refusals are logged by type and code only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from typing import Any

import trio

from ..common.requests import RequestError
from ..common.store_base import StoreUnavailableError
from .channel import PeerChannel, PeerLinkError, accept, connect

log = logging.getLogger("e2e.peer")
"""Where the link logs when its server names no logger of its own."""

PeerHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""``handler(frame) -> result fields``; refuses with :class:`RequestError`."""

REQUEST_TIMEOUT = 15.0
"""Seconds a request to the other server may take, connecting included."""
_INTERNAL = "internal"
_UNSUPPORTED = "unsupported"
_UNAVAILABLE = "unavailable"


class PeerUnavailable(Exception):
    """The other server cannot be reached now, or did not answer in time."""


class PeerRefused(Exception):
    """The other server refused a request: ``code`` says why (its API's codes)."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class PeerClient:
    """This server's connection to the other one, opened on first use and after any failure:
    to the first of ``addresses`` that answers, starting after the one that last failed (the
    other server's nodes, when it has several)."""

    def __init__(self, key: bytes, role: str, addresses: Sequence[tuple[str, int]],
                 timeout: float = REQUEST_TIMEOUT, logger: logging.Logger = log) -> None:
        if not addresses:
            raise ValueError("a peer client needs an address")
        self._key = key
        self.log = logger
        self.role = role
        self.addresses = list(addresses)
        self._next = 0  # the address to try first
        self.timeout = timeout
        self._channel: PeerChannel | None = None
        self._lock = trio.Lock()
        self._next_id = 0

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Ask the other server; its answer's fields.

        :class:`PeerUnavailable` when it cannot be reached or does not answer in time;
        :class:`PeerRefused` when it refuses.
        """
        async with self._lock:
            try:
                with trio.fail_after(self.timeout):
                    channel = await self._connected()
                    self._next_id += 1
                    await channel.send({"id": self._next_id, "type": kind, **fields})
                    response = await channel.receive()
                    while response.get("id") != self._next_id:
                        response = await channel.receive()
            except (PeerLinkError, trio.TooSlowError, OSError) as exc:
                await self.close()
                self._next = (self._next + 1) % len(self.addresses)  # the next one first
                reason = str(exc) or f"no answer in {self.timeout:g} s"
                raise PeerUnavailable(f"the other server cannot be reached now ({reason})"
                                      ) from None
            except BaseException:
                await self.close()  # cancelled half way: the channel's state is unknown
                raise
        error = response.get("error")
        if error is not None:
            error = error if isinstance(error, dict) else {}
            raise PeerRefused(str(error.get("code", _INTERNAL))[:64],
                              str(error.get("message", "refused"))[:500], error)
        return response

    async def _connected(self) -> PeerChannel:
        """The open channel, or one to the first address that answers (the error of the last
        one when none does)."""
        if self._channel is not None:
            return self._channel
        failure: OSError | None = None
        for attempt in range(len(self.addresses)):
            index = (self._next + attempt) % len(self.addresses)
            host, port = self.addresses[index]
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                self.log.info("peer %s:%d cannot be reached: %s", host, port, exc)
                failure = exc
                continue
            try:
                self._channel = await connect(stream, self._key, self.role)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            self._next = index
            self.log.info("peer link to %s:%d up", host, port)
            return self._channel
        assert failure is not None
        raise failure

    async def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.aclose()


def refusal(exc: PeerUnavailable | PeerRefused, codes: Container[str],
            unavailable: str) -> RequestError:
    """A failed request to the other server as this server's refusal to its client: the other
    server's code when this server's API has it (with ``device_mismatch``'s ``missing`` and
    ``stale``), ``unavailable`` otherwise."""
    if isinstance(exc, PeerUnavailable):
        return RequestError(unavailable, f"{exc}; nothing was sent, try again later")
    if exc.code not in codes:
        return RequestError(unavailable, f"the other server failed ({exc.code}); try again")
    details = {k: v for k, v in exc.details.items() if k in ("missing", "stale")}
    return RequestError(exc.code, f"the other server refused: {exc}", **details)


async def serve_peer(routes: Mapping[str, PeerHandler], key: bytes, role: str, host: str,
                     port: int, logger: logging.Logger = log,
                     task_status: trio.TaskStatus[list[trio.SocketListener]] = (
                         trio.TASK_STATUS_IGNORED)) -> None:
    """Serve the other server's requests on ``host:port`` until cancelled (logging to
    ``logger``); reports the listeners when ready."""
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handler(stream: trio.abc.Stream) -> None:
        try:
            channel = await accept(stream, key, role)
        except PeerLinkError as exc:
            logger.warning("refused a peer connection: %s", exc)
            await trio.aclose_forcefully(stream)
            return
        logger.info("peer link from the %s server up", channel.peer_role)
        try:
            while True:
                frame = await channel.receive()
                await channel.send(await _answer(routes, frame, logger))
        except PeerLinkError as exc:
            logger.info("peer link from the %s server closed: %s", channel.peer_role, exc)
        finally:
            await channel.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(listeners)


async def _answer(routes: Mapping[str, PeerHandler], frame: dict[str, Any],
                  logger: logging.Logger) -> dict[str, Any]:
    """The answer to one request (an error frame for a refusal or a failure of ours)."""
    request_id = frame.get("id")
    kind = frame.get("type")
    route = routes.get(kind) if isinstance(kind, str) else None
    try:
        if route is None:
            raise RequestError(_UNSUPPORTED, "unknown peer request")
        result = await route(frame)
    except RequestError as exc:
        logger.info("peer request %s refused: %s", str(kind)[:32], exc.code)
        return {"id": request_id, "error": {"code": exc.code, "message": str(exc),
                                            **exc.details}}
    except StoreUnavailableError as exc:
        logger.error("peer request %s failed in storage: %s", str(kind)[:32], exc)
        return {"id": request_id, "error": {"code": _UNAVAILABLE,
                                            "message": "storage unavailable; try again"}}
    except Exception:
        logger.exception("peer request %s failed", str(kind)[:32])
        return {"id": request_id, "error": {"code": _INTERNAL, "message": "internal error"}}
    return {"id": request_id, "ok": True, **result}

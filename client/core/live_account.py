"""One account's session to its server, kept open while a program runs (the daemon, the inbox).

:meth:`LiveAccount.run` connects, hands the session to :meth:`LiveAccount.receive` and, after a
loss (:data:`LOST`), reconnects with backoff: ``reconnect_start`` seconds, doubling up to
``reconnect_max``, back to the start once a session is up. :meth:`LiveAccount.session` gives a
call the live session, or a connection of its own while that is down; calls run one at a time.
Invariant: :attr:`LiveAccount.live` is the open session while there is one, else None.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import trio

from e2e_proto.errors import E2EProtoError

from .connection import ConnectionLost, ServerError
from .errors import ClientError

LOST = (ConnectionLost, ClientError, ServerError, OSError, E2EProtoError)
"""What ends a live session and means reconnecting."""

SessionT = TypeVar("SessionT")
SessionT_co = TypeVar("SessionT_co", covariant=True)


class SessionClient(Protocol[SessionT_co]):
    """What a live account needs of its transport's client: its state and new sessions."""

    state: Any
    """The device's state; ``state.account`` is the account name (None before registering)."""

    def session(self) -> contextlib.AbstractAsyncContextManager[SessionT_co]:
        """A connected, authenticated session."""
        ...


ClientT = TypeVar("ClientT", bound=SessionClient[Any])


class LiveAccount(abc.ABC, Generic[ClientT, SessionT]):
    """One transport's account, kept connected (see the module docstring)."""

    transport: ClassVar[str]
    logger: ClassVar[logging.Logger]
    """Where a loss is logged."""

    def __init__(self, client: ClientT, reconnect_start: float, reconnect_max: float) -> None:
        self.client = client
        self.reconnect_start, self.reconnect_max = reconnect_start, reconnect_max
        self.live: SessionT | None = None
        self.last_error: str | None = None
        self._lock = trio.Lock()

    @property
    def account(self) -> str:
        """The account name on this transport."""
        return self.client.state.account or ""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session and receive on it until cancelled, reconnecting with backoff after a
        loss; started once the first session is up (or failed)."""
        delay = self.reconnect_start
        started = False
        while True:
            await self.before_connecting()
            try:
                async with self.client.session() as session:
                    self.live, self.last_error = session, None
                    delay = self.reconnect_start
                    if not started:
                        started = True
                        task_status.started()
                    await self.receive(session)
                    continue  # receive() chose to stop: connect again, without a backoff
            except* LOST as group:
                self.last_error = str(group.exceptions[0])
                self.logger.warning("%s: %s; reconnecting in %g s", self.transport,
                                    self.last_error, delay)
            finally:
                self.live = None
            if not started:
                started = True
                task_status.started()
            await trio.sleep(delay)  # reconnection backoff
            delay = min(delay * 2, self.reconnect_max)

    async def before_connecting(self) -> None:
        """Wait, when need be, before each connection (the daemon: while its queue is full)."""

    @abc.abstractmethod
    async def receive(self, session: SessionT) -> None:
        """Receive on ``session`` until it is lost (raising); returning means reconnecting at
        once."""

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SessionT]:
        """The live session, or one of its own while it is down; one call at a time."""
        async with self._lock:
            if self.live is not None:
                yield self.live
            else:
                async with self.client.session() as session:
                    yield session

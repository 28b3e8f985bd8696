"""The home's account on one transport, kept connected: receiving into the queue, serving calls.

An :class:`Account` holds one session to its server for as long as the daemon runs
(reconnecting with backoff after a loss). Everything the session receives is shown to
:meth:`Account.take`, which queues it as events (committed) before the client library marks it
shown; the library has already committed it to the home and acknowledged it to the server, so
no message is lost at any point. When the queue is full the session is closed and stays closed
until subscribers make room: new messages wait on the server (its TTL and quota apply). Method
calls run one at a time per account (:meth:`Account.session`), on the live session, or on a
connection of their own while the live one is down. A ring is a live ``call_ring`` event, not
queued; the calls the daemon takes part in (:mod:`.calls`) run on the live session and end
with it.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import trio

from e2e_proto.capabilities import PRIVATE, SOCIAL

from ..cli.calls import PlanMaker
from ..cli.private import call_plan as private_call_plan
from ..cli.social import call_plan as social_call_plan
from ..core.calls import ActiveCall
from ..core.connection import ConnectionLost
from ..core.live_account import LiveAccount
from ..private.received import Received
from ..private.session import PrivateClient, PrivateSession
from ..private.state import ClientState
from ..social.session import SocialClient, SocialSession
from ..social.state import SocialEvent, SocialState
from .calls import CallRunner, DaemonCall
from .config import DaemonConfig
from .events import Event, key_changed_event, private_event, ring_event, social_event
from .hub import EventHub

log = logging.getLogger("e2e.daemon")

SessionT = TypeVar("SessionT", PrivateSession, SocialSession)
ClientT = TypeVar("ClientT", PrivateClient, SocialClient)


class Account(LiveAccount[ClientT, SessionT]):
    """One transport's account of the home: its client, its live session, its events."""

    server: ClassVar[str]
    """How a refusal names the server (``the relay refused: ...``)."""
    plan_call: ClassVar[Callable[..., PlanMaker]]
    """The ``call`` command's choice of what to join or start (``call_plan`` of the CLI)."""
    logger = log

    def __init__(self, client: ClientT, hub: EventHub, config: DaemonConfig) -> None:
        super().__init__(client, config.reconnect_start, config.reconnect_max)
        self.hub = hub
        self.config = config
        self.paused = False
        """Whether taking from the server is paused because the queue is full."""
        self.calls = CallRunner(self.transport, self.server, hub, config)
        self._connected = trio.Event()
        """Set while a live session is up (a call waits for it)."""
        self._call_nursery: trio.Nursery | None = None
        self._receiving: trio.CancelScope | None = None
        self.siblings: Mapping[str, Account[Any, Any]] = {}
        """The home's accounts by transport, this one included (:func:`open_accounts` sets
        them): a command needing both transports (``link-account``) finds the other here."""

    @property
    def device_id(self) -> int:
        """This device's id on the transport."""
        return self.client.state.device_id

    async def before_connecting(self) -> None:
        """Wait while the queue is full (paused: new messages wait on the server)."""
        while self.hub.full:
            self.paused = True
            await self.hub.room.wait()
        self.paused = False

    async def receive(self, session: SessionT) -> None:
        """Receive into the queue until the session is lost, or until :meth:`take` finds the
        queue full (then return, to wait for room); the calls running on the session end with
        it."""
        self._connected.set()
        try:
            async with trio.open_nursery() as self._call_nursery:
                with trio.CancelScope() as self._receiving:
                    await session.receive(self.take, math.inf)
                self._call_nursery.cancel_scope.cancel()
        finally:
            self._receiving, self._call_nursery = None, None
            self._connected = trio.Event()

    def take(self, item: Any) -> None:
        """Queue what the session shows (before it is marked shown); pause when full. A ring
        goes to the subscriptions connected now."""
        ring = ring_event(item)
        if ring is not None:
            self.hub.broadcast(ring)
            return
        for event in self.events_of(item):
            self.hub.publish(event)
        if self.hub.full and self._receiving is not None:
            self._receiving.cancel()

    @abc.abstractmethod
    def events_of(self, item: Any) -> list[Event]:
        """The events of one thing the session shows."""

    async def queue_released(self, session: SessionT) -> None:
        """Queue what an acceptance released (held messages, now unseen) at once, rather than
        on the next reconnection; ``session`` downloads their files."""
        await session.show_unseen(self.take)

    @contextlib.asynccontextmanager
    async def call_session(self) -> AsyncIterator[SessionT]:
        """The live session, for placing a call (one method call at a time, as
        :meth:`session`); while it is down, waiting ``call_connect_wait`` seconds for it, then
        :class:`ConnectionLost`: a call runs on it."""
        with trio.move_on_after(self.config.call_connect_wait):
            await self._connected.wait()
        async with self._lock:
            if self.live is None:
                raise ConnectionLost(f"the daemon is not connected to the {self.server} now "
                                     f"({self.last_error or 'connecting'}): a call runs on "
                                     "that connection; try again when it is back")
            yield self.live

    def start_call(self, session: SessionT, call: ActiveCall, seconds: float) -> DaemonCall:
        """Run ``call``, opened on the live ``session``, until it is over or the session ends;
        :class:`ConnectionLost` when ``session`` is not the live one any more."""
        if session is not self.live or self._call_nursery is None:
            raise ConnectionLost(f"the daemon's connection to the {self.server} ended")
        return self.calls.start(self._call_nursery, session, call, seconds)

    def info(self) -> dict[str, Any]:
        """What ``daemon_info`` says about this account."""
        return {"account": self.account, "device": self.device_id,
                "connected": self.live is not None, "paused": self.paused,
                "last_error": self.last_error, "calls": len(self.calls.running)}


class PrivateAccount(Account[PrivateClient, PrivateSession]):
    """The home's account on the relay (``HOME/state.db``)."""

    transport = PRIVATE
    server = "relay"
    plan_call = staticmethod(private_call_plan)

    def events_of(self, item: Received) -> list[Event]:
        """A message's event; after a notice, the contacts' unaccepted key changes too."""
        events = [private_event(item)]
        if item.warning is not None:
            events += self.key_changes(self.client.state.contacts())
        return events

    def key_changes(self, accounts: list[str]) -> list[Event]:
        """A ``key_changed`` event for each of ``accounts`` whose new key is not accepted."""
        state: ClientState = self.client.state
        events = []
        for account in accounts:
            known = state.contact(account)
            if known is not None and state.key_changed(account):
                events.append(key_changed_event(account, known[0].raw))
        return events

    @contextlib.asynccontextmanager
    async def group_session(self) -> AsyncIterator[PrivateSession]:
        """A session for a ``group`` call, as the CLI's: up to date with what the relay holds
        for this device (the live session is, by receiving; a connection of its own takes the
        backlog in first) and with this device's updates delivered."""
        async with self.session() as session:
            if session is not self.live:
                await session.catch_up()
            await session.deliver_pending_updates()
            yield session

    def publish_key_changes(self, *accounts: str) -> None:
        """Queue the key changes a call noticed on ``accounts``."""
        for event in self.key_changes(list(accounts)):
            self.hub.publish(event)


class SocialAccount(Account[SocialClient, SocialSession]):
    """The home's account on the social server (``HOME/social.db``)."""

    transport = SOCIAL
    server = "social server"
    plan_call = staticmethod(social_call_plan)

    def events_of(self, item: SocialEvent) -> list[Event]:
        """The event of what the social session shows."""
        return [social_event(item)]


def open_accounts(home: Any, passphrase: str | None, relay: tuple[str, int],
                  social: tuple[str, int], hub: EventHub, config: DaemonConfig,
                  **client_options: Any) -> dict[str, Account[Any, Any]]:
    """The home's accounts: private when ``state.db`` has one, social when ``social.db`` has
    one (a file that does not exist is not created). Their states stay open until closed."""
    home = Path(home)
    accounts: dict[str, Account[Any, Any]] = {}
    opened: list[ClientState | SocialState] = []
    try:
        if (home / ClientState.state_file).exists():
            state = ClientState(home, passphrase)
            opened.append(state)
            if state.account is not None:
                accounts[PRIVATE] = PrivateAccount(
                    PrivateClient(state, *relay, **client_options), hub, config)
        if (home / SocialState.state_file).exists():
            social_state = SocialState(home, passphrase)
            opened.append(social_state)
            if social_state.account is not None and social_state.get("token") is not None:
                accounts[SOCIAL] = SocialAccount(
                    SocialClient(social_state, *social, **client_options), hub, config)
    except BaseException:
        for each in opened:
            each.close()
        raise
    for each in opened:
        if not any(a.client.state is each for a in accounts.values()):
            each.close()
    for account in accounts.values():
        account.siblings = accounts
    return accounts

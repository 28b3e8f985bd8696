"""Publishing events to the queue and sending them to subscriptions, acknowledged by id.

:class:`EventHub` is the one way into the :class:`~client.daemon.queue.EventQueue`: it commits
an event, then wakes the subscriptions. A :class:`Subscription` sends every unacknowledged event
in id order, at most ``window`` ahead of the acknowledgements, then announces ``caught_up`` once
and goes on with new events. Any subscriber's ``ack`` removes an event for all; an event sent
but never acknowledged (the subscriber died) is sent again to the next subscription. The hub
also says when the queue is full (taking from the servers pauses) and when it has room again.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from .config import DaemonConfig
from .events import Event
from .jsonrpc import notification_body
from .queue import EventQueue, QueuedEvent

CAUGHT_UP = "caught_up"
"""The notification a subscription gets once, when every event queued so far was sent."""


class EventHub:
    """The queue, the subscriptions reading it, and whether it has room."""

    def __init__(self, queue: EventQueue, config: DaemonConfig) -> None:
        self.queue = queue
        self.config = config
        self.room = trio.Event()
        """Set while the queue is below its bound (taking messages from the servers)."""
        self.subscriptions: set[Subscription] = set()
        self._ids = itertools.count(1)
        self._update_room()

    @property
    def full(self) -> bool:
        """Whether the queue holds its bound of events (taking from the servers pauses)."""
        return self.queue.pending_count >= self.config.max_queued_events

    def publish(self, event: Event) -> int | None:
        """Queue an event (committed on return) and wake the subscriptions; its id, or None
        when its key was queued before."""
        event_id = self.queue.append(event.key, event.name, event.params)
        if event_id is not None:
            self._wake()
            self._update_room()
        return event_id

    def broadcast(self, event: Event) -> None:
        """Send a live event to the subscriptions connected now, without queueing it: one of
        this daemon's own doing (``sent``: the caller has the method's answer already) or one
        that is about now (calls). It has no ``event_id`` and needs no ``ack``."""
        for subscription in self.subscriptions:
            subscription.push_live(notification_body(event.name, event.params))

    def ack(self, ids: Iterable[int]) -> list[int]:
        """Remove acknowledged events for every subscription; the ids that were queued."""
        acked = self.queue.ack(ids)
        if acked:
            for subscription in self.subscriptions:
                subscription.in_flight.difference_update(acked)
            self._wake()
            self._update_room()
        return acked

    def subscribe(self, window: int | None = None) -> Subscription:
        """A new subscription, from the oldest unacknowledged event."""
        subscription = Subscription(self, next(self._ids),
                                    window or self.config.subscription_window)
        self.subscriptions.add(subscription)
        return subscription

    def _wake(self) -> None:
        for subscription in self.subscriptions:
            subscription.wake()

    def _update_room(self) -> None:
        """Room again at ``resume_queued_events`` or below; none from the bound up."""
        pending = self.queue.pending_count
        if pending <= self.config.resume_queued_events:
            self.room.set()
        elif self.full and self.room.is_set():
            self.room = trio.Event()


Deliver = Callable[[dict[str, Any]], Awaitable[None]]


class Subscription:
    """One subscriber's view of the queue: what was sent to it and is not acknowledged yet."""

    def __init__(self, hub: EventHub, subscription_id: int, window: int) -> None:
        self.hub = hub
        self.id = subscription_id
        self.window = window
        self.in_flight: set[int] = set()
        self._live: collections.deque[dict[str, Any]] = collections.deque(maxlen=window)
        self._wakeup = trio.Event()

    def wake(self) -> None:
        """The queue changed (an event was queued or acknowledged)."""
        self._wakeup.set()

    def push_live(self, notification: dict[str, Any]) -> None:
        """Send a live-only notification next (the oldest are dropped past ``window``)."""
        self._live.append(notification)
        self._wakeup.set()

    def push_events(self, events: Iterable[Event]) -> None:
        """Send live events next, before anything queued when the subscription is new."""
        for event in events:
            self.push_live(notification_body(event.name, event.params))

    async def run(self, deliver: Deliver) -> None:
        """Send events (as notifications) through ``deliver`` until cancelled.

        Each event is sent once per subscription, oldest first; ``caught_up`` follows once,
        when every event queued so far was sent.
        """
        cursor, caught_up = 0, False
        try:
            while True:
                self._wakeup = trio.Event()
                while self._live:
                    await deliver(self._live.popleft())
                room = self.window - len(self.in_flight)
                batch = self.hub.queue.pending(cursor, room) if room > 0 else []
                for event in batch:
                    self.in_flight.add(event.id)
                    cursor = event.id
                    await deliver(event_notification(event, self.id))
                if len(batch) == room > 0:
                    continue  # a full window was sent: there may be more
                if room > 0 and not caught_up:
                    caught_up = True
                    await deliver(notification_body(CAUGHT_UP, {"subscription": self.id}))
                await self._wakeup.wait()
        finally:
            self.close()

    def close(self) -> None:
        """Stop counting this subscription (what it was sent and did not ack stays queued)."""
        self.hub.subscriptions.discard(self)


def event_notification(event: QueuedEvent, subscription: int) -> dict[str, Any]:
    """The notification of a queued event: its name as the method, its id for ``ack``."""
    return notification_body(event.name, {"event_id": event.id, "subscription": subscription,
                                          **event.params})

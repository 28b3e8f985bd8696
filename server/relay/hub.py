"""How relay connections reach one another: new mail, pushes, unlinking, displacement, links,
and which node runs a call.

A send, an unlink or a link approval on one connection must reach connections of other devices,
which may be served by another relay process (a *node*). A :class:`Hub` carries those events:
:class:`LocalHub` within one process (the SQLite store), and
:class:`~server.relay.redis_hub.RedisHub` between the nodes that share one Redis. The relay
tells its hub which devices and link offers it serves; the hub calls the relay back
(:class:`Listener`) with what it hears. Once :meth:`Hub.serve` or :meth:`Hub.watch_link` has
returned, no event for that device or link offer is missed; when a hub may have missed some
(its Redis connection was lost), it calls :meth:`Listener.hear_all_mail` so that every
connection reads its mailbox again, and tells of every newer connection elsewhere of a device it
serves (:data:`DISPLACED`).

Calls are kept by the node where they start (:mod:`server.relay.calls`); the hub carries their
notices to the other nodes (:meth:`Hub.push_elsewhere`) and tells which node runs a call
(:meth:`Hub.call_elsewhere`), so that a request for it elsewhere gets a clear refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import Any, NamedTuple, Protocol

from e2e_proto.address import Address

from .store import Delivery

MAIL = "mail"
"""New mail is stored for the device: ``detail`` is the message just stored, with its seq, when
the sending node's store numbered it (the device's connections on that node may push it without
reading the mailbox), else None."""
PUSH = "push"
"""Push ``detail`` (a frame) to the device's connections."""
UNLINKED = "unlinked"
"""The device was removed from its account: close its connections."""
DISPLACED = "displaced"
"""A newer connection of the device authenticated on another node, with the claim ``detail``
(see :meth:`Hub.serve`): close the connections of older claims."""


class DeviceEvent(NamedTuple):
    """Something for every connection of one device, wherever it is served."""

    kind: str
    detail: Any = None


class Listener(Protocol):
    """What a hub tells the relay it serves (:class:`~server.relay.server.Relay`)."""

    def hear(self, address: Address, event: DeviceEvent) -> None:
        """Act on ``event`` for this process's connections of ``address``."""
        ...

    def hear_link(self, lookup: bytes, device_id: int) -> None:
        """The link offer under ``lookup`` was approved as ``device_id``."""
        ...

    def hear_all_mail(self) -> None:
        """Events may have been missed: every connection reads its mailbox again."""
        ...

    def served(self) -> Iterable[Address]:
        """The devices this process has connections of."""
        ...

    def serves(self, address: Address) -> bool:
        """Whether this process has a connection of ``address``."""
        ...

    def links_waiting(self) -> Iterable[bytes]:
        """The lookups of the link offers that wait on this process's connections."""
        ...


class Hub(Protocol):
    """Carries :class:`DeviceEvent` and link approvals to the connections they are for.

    Every method that sends raises
    :class:`~server.common.store_base.StoreUnavailableError` when it cannot.
    """

    def bind(self, listener: Listener) -> None:
        """Report what is heard to ``listener`` (once, before :meth:`run`)."""
        ...

    async def run(self) -> None:
        """Hear events from other processes until cancelled (nothing to do for one process)."""
        ...

    async def serve(self, address: Address) -> int:
        """A connection of ``address`` authenticated here: hear its events from now on, and
        displace its connections on other nodes; returns its *claim*, greater than that of
        every connection of the device that authenticated before it, on any node.

        A :data:`DISPLACED` event for ``address`` may be heard before this returns (its
        connection on the other node claimed first, or last): the claims tell.
        """
        ...

    async def release(self, address: Address) -> None:
        """This process has no connection of ``address`` left (best effort, never raises)."""
        ...

    async def watch_link(self, lookup: bytes) -> None:
        """A link offer under ``lookup`` waits here: hear its approval from now on."""
        ...

    async def release_link(self, lookup: bytes) -> None:
        """The link offer under ``lookup`` no longer waits here (best effort, never raises)."""
        ...

    def mail_stored(self, mail: Iterable[tuple[Address, Delivery | None]]) -> None:
        """A send was stored for each address: wake its connections, handing this node's the
        message stored for it (when the store numbered it, else None)."""
        ...

    async def tell(self, address: Address, event: DeviceEvent) -> None:
        """Deliver ``event`` to every connection of ``address``, on every node."""
        ...

    async def tell_link(self, lookup: bytes, device_id: int) -> None:
        """Tell the connection waiting with ``lookup`` that it was linked as ``device_id``."""
        ...

    def push_elsewhere(self, accounts: Set[str], frame: dict[str, Any]) -> None:
        """Push ``frame`` to the connections of the devices of ``accounts`` on the other nodes
        (this node's the relay pushes to itself); never waits, best effort (a notice)."""
        ...

    def call_started(self, call_id: bytes) -> None:
        """This node runs the call ``call_id`` from now on (never waits)."""
        ...

    def call_ended(self, call_id: bytes) -> None:
        """The call ``call_id`` this node ran has ended (never waits)."""
        ...

    async def call_elsewhere(self, call_id: bytes) -> bool:
        """Whether another node runs the call ``call_id``."""
        ...


class BoundHub:
    """What every hub does the same way: it is bound to the relay it reports to."""

    _listener: Listener | None = None

    def bind(self, listener: Listener) -> None:
        """Report what is heard to ``listener``."""
        self._listener = listener

    @property
    def listener(self) -> Listener:
        """The relay this hub reports to."""
        assert self._listener is not None, "bind() the hub to its relay first"
        return self._listener


class LocalHub(BoundHub):
    """:class:`Hub` for one relay process: every event is for this process's connections."""

    async def run(self) -> None:
        """Nothing to hear from: every event starts in this process."""

    async def serve(self, address: Address) -> int:
        """Nothing to do: this process hears all its events, and displaces nothing (its
        connections of one device are all served)."""
        return 0

    async def release(self, address: Address) -> None:
        """Nothing to do."""

    async def watch_link(self, lookup: bytes) -> None:
        """Nothing to do."""

    async def release_link(self, lookup: bytes) -> None:
        """Nothing to do."""

    def mail_stored(self, mail: Iterable[tuple[Address, Delivery | None]]) -> None:
        """Wake the connections of each address, handing them its message."""
        for address, handed in mail:
            self.listener.hear(address, DeviceEvent(MAIL, handed))

    async def tell(self, address: Address, event: DeviceEvent) -> None:
        """Deliver ``event`` to the connections of ``address``."""
        self.listener.hear(address, event)

    async def tell_link(self, lookup: bytes, device_id: int) -> None:
        """Tell the connection waiting with ``lookup``."""
        self.listener.hear_link(lookup, device_id)

    def push_elsewhere(self, accounts: Set[str], frame: dict[str, Any]) -> None:
        """Nothing to do: there is no other node."""

    def call_started(self, call_id: bytes) -> None:
        """Nothing to do: every call runs here."""

    def call_ended(self, call_id: bytes) -> None:
        """Nothing to do."""

    async def call_elsewhere(self, call_id: bytes) -> bool:
        """Never: there is no other node."""
        return False

"""Calls the daemon takes part in for its clients: the daemon streams the media itself.

A bot cannot sensibly stream media over JSON-RPC, so a call placed through the daemon
(``call_start``, ``call_join``) runs in the daemon's process as ``e2e-chat call`` runs it: the
synthetic stream of docs/PROTOCOL.md §18.7, on the account's live session (the connection that
receives the call's notices and keys; a server ties a participant to the connection that
joined). It runs until ``call_leave`` or ``call_end``, its ``seconds``, the call's end, or the
end of that connection (lost, or closed while the event queue is full), whichever comes first.
``call_stats`` reads what arrived so far, and once the call is over its outcome, for the newest
``kept_call_reports`` calls. Who joins and leaves, and the end, are live events
(:func:`~client.daemon.events.call_event`), never queued: a call happens now.

Bounds: at most ``max_calls`` calls per account at once, each at most ``max_call_seconds``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import trio

from e2e_proto.address import Address
from e2e_proto.call_media import AUDIO_PROFILE, VIDEO_PROFILE

from ..cli.calls import PlanMaker
from ..cli.common import first_leaf, user_error_line
from ..core.calls import ActiveCall, CallInfo, CallReport, Grant, Watcher
from ..core.connection import ConnectionLost
from ..core.errors import ClientError
from .config import DaemonConfig
from .events import call_event, call_info_params
from .hub import EventHub
from .jsonrpc import Codes, RpcError

if TYPE_CHECKING:
    from .accounts import Account

log = logging.getLogger("e2e.daemon")

LEFT = "left"
"""Why a call is over for the daemon: it left (``call_leave``, or its seconds ran out)."""
ENDED = "ended"
"""The call ended for everybody (``call_end``, or the server ended it)."""
LOST = "lost"
"""The daemon's connection to the server ended (or the daemon stopped)."""
FAILED = "failed"
"""The call could not go on (the forwarding unit did not answer, ...): ``error`` says why."""

LEFT_REASONS = {"hung up": "left", "left": "left", "is gone": "gone", "timed out": "timed_out"}
"""A ``call_left`` event's ``reason`` for each way :class:`ActiveCall` says someone left."""


class DaemonCall:
    """One call the daemon takes part in: the call, when it started, its outcome once over."""

    def __init__(self, call: ActiveCall) -> None:
        self.call = call
        self.started = trio.current_time()
        self.done = trio.Event()
        self.reason: str | None = None
        """Why it is over (:data:`LEFT`, :data:`ENDED`, :data:`LOST`, :data:`FAILED`); None
        while it runs."""
        self.error: str | None = None
        """The one-line error of a call that failed or was lost."""
        self.report: CallReport | None = None

    def outcome(self) -> dict[str, Any]:
        """``{call_id, running, reason, error, report}``: the report so far while it runs."""
        report = self.report or self.call.report(trio.current_time() - self.started)
        return {"call_id": self.call.call_id.hex(), "running": self.reason is None,
                "reason": self.reason, "error": self.error, "report": report.as_json()}


class CallRunner:
    """One account's calls in the daemon: those running and the newest that are over."""

    def __init__(self, transport: str, server: str, hub: EventHub,
                 config: DaemonConfig) -> None:
        self.transport = transport
        self.server = server
        self.hub = hub
        self.config = config
        self.running: dict[bytes, DaemonCall] = {}
        self.over: OrderedDict[bytes, DaemonCall] = OrderedDict()

    def check_room(self, call_id: bytes | None = None) -> None:
        """Refuse (:class:`ClientError`) one call more than ``max_calls``, or ``call_id`` when
        the daemon is in it already."""
        if call_id is not None and call_id in self.running:
            raise ClientError(f"the daemon is in call {call_id.hex()} already")
        if len(self.running) >= self.config.max_calls:
            raise ClientError(f"the daemon is in {self.config.max_calls} calls on the "
                              f"{self.transport} transport already: leave one first")

    def find(self, call_id: bytes) -> DaemonCall:
        """A call running or kept; :class:`ClientError` for any other."""
        found = self.running.get(call_id) or self.over.get(call_id)
        if found is None:
            raise ClientError(f"the daemon has no call {call_id.hex()} (it keeps the "
                              f"{self.config.kept_call_reports} newest that are over)")
        return found

    def running_call(self, call_id: bytes) -> DaemonCall:
        """A call the daemon is in; :class:`ClientError` for any other."""
        found = self.running.get(call_id)
        if found is None:
            raise ClientError(f"the daemon is not in call {call_id.hex()}")
        return found

    def watch(self, call_id: bytes) -> Watcher:
        """What tells the subscriptions who joins and leaves the call ``call_id``."""
        def changed(why: str, pid: int, address: Address | None) -> None:
            who = {"participant": pid, "account": None if address is None else address.account,
                   "device": None if address is None else address.device_id}
            if why == "joined":
                self.hub.broadcast(call_event("call_joined", self.transport, call_id, **who))
            else:
                self.hub.broadcast(call_event("call_left", self.transport, call_id, **who,
                                              reason=LEFT_REASONS.get(why, why)))
        return changed

    def start(self, nursery: trio.Nursery, session: Any, call: ActiveCall,
              seconds: float) -> DaemonCall:
        """Run the opened ``call`` of ``session`` in ``nursery`` (the live session's)."""
        entry = self.running[call.call_id] = DaemonCall(call)
        nursery.start_soon(self._run, entry, session, seconds)
        return entry

    async def _run(self, entry: DaemonCall, session: Any, seconds: float) -> None:
        """Run one call to its end; whatever happens, its outcome is kept and announced."""
        reason, error = LOST, f"the daemon's connection to the {self.server} ended"
        try:
            entry.report = await session.call_book.run(entry.call, seconds)
            reason, error = (LEFT if entry.call.left else ENDED), None
        except Exception as exc:  # a call's failure ends that call, never the daemon
            leaf = first_leaf(exc)
            line = user_error_line(leaf, self.server)
            if line is None and isinstance(leaf, OSError):
                line = str(leaf)
            if line is None:
                log.error("a call failed", exc_info=exc)
            reason, error = FAILED, line or "internal error: see the daemon's log"
            entry.call.notice(f"the call failed: {error}")
            await _leave_quietly(session, entry.call.call_id)
        finally:
            self._finish(entry, reason, error)

    def _finish(self, entry: DaemonCall, reason: str, error: str | None) -> None:
        if entry.report is None:
            entry.report = entry.call.report(trio.current_time() - entry.started)
        entry.reason, entry.error = reason, error
        call_id = entry.call.call_id
        self.running.pop(call_id, None)
        self.over[call_id] = entry
        while len(self.over) > self.config.kept_call_reports:
            self.over.popitem(last=False)
        entry.done.set()
        outcome = entry.outcome()
        del outcome["call_id"], outcome["running"]
        self.hub.broadcast(call_event("call_ended", self.transport, call_id, **outcome))


async def _leave_quietly(session: Any, call_id: bytes) -> None:
    """Leave ``call_id`` at the server, if it still has this device in it."""
    try:
        await session.call_leave(call_id)
    except (ClientError, ConnectionLost):
        pass  # not in it any more, or the connection is gone (which leaves it too)


def call_id_param(value: str) -> bytes:
    """A ``call_id`` parameter (32 hex digits, checked by the schema) as bytes."""
    return bytes.fromhex(value)


def seconds_param(value: float | None, config: DaemonConfig) -> float:
    """A ``seconds`` parameter: absent, ``max_call_seconds``; more is invalid (-32602)."""
    if value is None:
        return config.max_call_seconds
    if value > config.max_call_seconds:
        raise RpcError(Codes.INVALID_PARAMS, "invalid params: 'seconds' must be at most "
                       f"{config.max_call_seconds:g}")
    return float(value)


async def call_start(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Call the account ``name`` (joining its call to this account if it is calling) or the
    group ``group`` (joining its running call if there is one), and stream."""
    name, group = params["name"], params["group"]
    if (name is None) == (group is None):
        raise RpcError(Codes.INVALID_PARAMS, "invalid params: call_start needs 'name' or "
                       "'group' (one of them)")
    return await _place(account, account.plan_call(name, group), params)


async def call_join(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Join the call ``call_id`` that rings here (without it: the newest, one-to-one first, as
    ``e2e-chat call --answer``), and stream."""
    call_id = params["call_id"]
    return await _place(account, account.plan_call(
        None, None, None if call_id is None else call_id_param(call_id)), params)


async def _place(account: Account[Any, Any], plan: PlanMaker, params: dict[str, Any]
                 ) -> dict[str, Any]:
    """Join or start the call ``plan`` chooses on the live session, and run it there."""
    seconds = seconds_param(params["seconds"], account.config)
    profile = VIDEO_PROFILE if params["video"] else AUDIO_PROFILE
    account.calls.check_room()
    async with account.call_session() as session:
        chosen = await plan(session, await session.calls_ringing())
        if chosen.info is not None:
            account.calls.check_room(chosen.info.call_id)
        grant: Grant = await chosen.enter(session)
        try:
            call = await session.open_call(grant, profile,
                                           watch=account.calls.watch(grant.call_id),
                                           **chosen.options)
            account.start_call(session, call, seconds)
        except Exception:
            session.call_book.close(grant.call_id)
            await _leave_quietly(session, grant.call_id)
            raise
    return {"call_id": grant.call_id.hex(), "started": chosen.info is None,
            "participant": grant.participant, "end_to_end": grant.e2e,
            "participants": [{"participant": pid, "account": address.account,
                              "device": address.device_id}
                             for pid, address in sorted(grant.participants.items())],
            "seconds": seconds, "video": bool(params["video"])}


async def call_list(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The calls this account may join or is in, oldest first: ``{calls}``."""
    async with account.session() as session:
        ringing = await session.calls_ringing()
        return {"calls": [{**call_info_params(info, group_name(session, info)),
                           "from": info.caller.account, "device": info.caller.device_id,
                           "joined": info.joined, "running": info.call_id in account.calls.running}
                          for info in ringing]}


def group_name(session: Any, info: CallInfo) -> str | None:
    """How the call's group is named here (a private group by its name); None: one to one."""
    if isinstance(info.group, bytes):
        return str(session.call_group_name(info.group))
    return info.group


async def call_leave(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Leave the call ``call_id`` the daemon is in: its outcome."""
    entry = account.calls.running_call(call_id_param(params["call_id"]))
    entry.call.stop()
    await entry.done.wait()
    return entry.outcome()


async def call_end(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """End the call ``call_id`` for everybody (the server decides who may): its outcome
    (``report`` null when the daemon was not in it)."""
    call_id = call_id_param(params["call_id"])
    entry = account.calls.running.get(call_id)
    async with account.session() as session:
        await session.call_end(call_id)
    if entry is None:
        return {"call_id": call_id.hex(), "running": False, "reason": ENDED, "error": None,
                "report": None}
    entry.call.ended.set()  # the server ended it: the call stops without leaving
    await entry.done.wait()
    return entry.outcome()


async def call_stats(account: Account[Any, Any], params: dict[str, Any]) -> dict[str, Any]:
    """What arrived so far in the call ``call_id`` (with ``wait``: once it is over)."""
    entry = account.calls.find(call_id_param(params["call_id"]))
    if params["wait"]:
        await entry.done.wait()
    return entry.outcome()

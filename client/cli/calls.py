"""``e2e-chat call``: start or join a call, run the synthetic stream, print what arrived.

    e2e-chat call bob [--seconds 10] [--video] [--json]      # call bob, or answer bob's call
    e2e-chat call --group friends                          # start or join the group's call
    e2e-chat call --answer                                 # join the call ringing here

Both transports share this; each says how to find or start the call (:class:`CallPlan`).
While the call runs, the session keeps receiving (call notices, messages): messages are shown
on stderr, so that ``--json`` output stays one object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from e2e_proto.call_media import AUDIO_PROFILE, VIDEO_PROFILE, MediaProfile

from ..core.calls import CallInfo, CallReport, Grant
from ..core.errors import ClientError


class CallSession(Protocol):
    """A transport session as the call command uses it."""

    async def receive(self, handler: Callable[[Any], Awaitable[None] | None],
                      wait: float | None = None, /) -> None:
        """Show what arrives for ``wait`` seconds."""
        ...

    async def calls_ringing(self) -> list[CallInfo]:
        """The calls this account may join."""
        ...

    async def call_join(self, info: CallInfo) -> Grant:
        """Join the call ``info`` describes."""
        ...

    async def run_call(self, grant: Grant, profile: MediaProfile, seconds: float,
                       **options: Any) -> CallReport:
        """Take part in the call of ``grant``."""
        ...


@dataclass
class CallPlan:
    """What the command does: join ``info``'s call or start one, and the call's options."""

    info: CallInfo | None
    start: Callable[[], Awaitable[Grant]] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    async def enter(self, session: CallSession) -> Grant:
        """Join the chosen call, or start one."""
        if self.info is not None:
            return await session.call_join(self.info)
        assert self.start is not None
        return await self.start()


PlanMaker = Callable[[Any, list[CallInfo]], Awaitable[CallPlan]]
"""Chooses, on a session and the calls ringing for it, what a call command does."""


def ringing_for_me(calls: list[CallInfo], call_id: bytes | None = None) -> CallInfo:
    """The call ``call_id`` if it rings here, else the newest call that does (one-to-one
    first); not one this device is in. :class:`ClientError` when there is none."""
    calls = [c for c in calls if not c.joined]
    if call_id is not None:
        calls = [c for c in calls if c.call_id == call_id]
        if not calls:
            raise ClientError(f"no call {call_id.hex()} is ringing for you")
    if not calls:
        raise ClientError("no call is ringing for you")
    one_to_one = [c for c in calls if c.group is None]
    return (one_to_one or calls)[-1]


async def call_command(open_session: Callable[[], AbstractAsyncContextManager[CallSession]],
                       args: argparse.Namespace, transport: str, plan: PlanMaker,
                       show: Callable[[Any], None]) -> int:
    """Run the ``call`` command on a session of ``open_session``; the exit code."""
    profile = VIDEO_PROFILE if args.video else AUDIO_PROFILE
    async with open_session() as session:
        chosen = await plan(session, await session.calls_ringing())
        grant = await chosen.enter(session)
        if not args.json:
            print(describe(grant.call_id, grant.e2e, len(grant.participants), transport,
                           profile, args.seconds), flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.receive, show, math.inf)
            report = await session.run_call(grant, profile, args.seconds, **chosen.options)
            nursery.cancel_scope.cancel()
    print(json.dumps(report.as_json()) if args.json else format_report(report), flush=True)
    return 0


def describe(call_id: bytes, e2e: bool, participants: int, transport: str,
             profile: MediaProfile, seconds: float) -> str:
    """The line printed when the call starts (``participants`` in it at the join)."""
    what = "video" if profile is VIDEO_PROFILE else "audio"
    protection = ("end-to-end encrypted (SFrame, AES_256_GCM_SHA512_128)" if e2e else
                  "NOT end-to-end encrypted: the server holds the keys (SFrame under its keys)")
    return (f"call {call_id.hex()[:8]} on the {transport} transport: {protection}; "
            f"{what} for {seconds:g} s; {participants} in the call")


def format_report(report: CallReport) -> str:
    """The table printed at the end of a call."""
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [f"sent {report.sent} frames in {report.seconds:.1f} s"
             + (f"; joined the forwarding unit again {report.rejoins} time(s)"
                if report.rejoins else "")]
    head = ("participant", "received", "lost", "failed", "no key", "late", "dup", "p50 ms",
            "p99 ms")
    rows = [(str(p.address or p.participant), str(p.received), str(p.lost), str(p.failed),
             str(p.no_key), str(p.reordered), str(p.duplicates), ms(p.p50_ms), ms(p.p99_ms))
            for p in report.participants]
    if not rows:
        lines.append("nobody else was in the call")
    else:
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
        for row in (head, *rows):
            lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    if report.notices:
        lines.append("notices: " + "; ".join(report.notices[:20]))
    return "\n".join(lines)


def show_on_stderr(line: Callable[[Any], str | None]) -> Callable[[Any], None]:
    """A receive handler printing each item's ``line`` (or its warning) on stderr."""
    def show(item: Any) -> None:
        text = item.warning if getattr(item, "warning", None) else line(item)
        if text:
            print(text, file=sys.stderr, flush=True)
    return show

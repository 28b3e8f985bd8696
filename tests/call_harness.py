"""Test harness for calls: an in-process forwarding unit (recording what it receives), servers
that name it, "phones": sessions whose receive loop runs while the test places calls, and
:class:`Logged` child processes (a unit, a server, ``e2e-chat call``) whose stderr is waited on."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from client.core.calls import ActiveCall, CallReport, Grant
from e2e_proto.call_media import MediaProfile
from e2e_proto.primitives import system_random
from server.calls.registry import SfuGrant
from server.calls.sfu import Sfu, SfuConfig
from server.relay.config import RelayConfig
from server.relay.main import serve as relay_serve
from server.relay.server import Relay
from server.relay.sqlite_store import SqliteRelayStore
from server.social.main import serve as social_serve
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore
from tests.fault_support import ROOT
from tests.server_harness import RunningServer, start_server
from tests.social_harness import FAST

CALL_KEY = bytes(range(200, 232))


@dataclass
class RunningSfu:
    """A forwarding unit serving on 127.0.0.1 in a test's nursery."""

    sfu: Sfu
    grant: SfuGrant
    scope: trio.CancelScope
    stopped: trio.Event = field(default_factory=trio.Event)
    received: list[bytes] = field(default_factory=list)
    """Every datagram it was handed, when recording."""
    changed: trio.Event = field(default_factory=trio.Event)

    async def until(self, predicate: Callable[[bytes], bool]) -> None:
        """Wait until a datagram ``predicate`` accepts has arrived (recording only)."""
        while not any(predicate(data) for data in self.received):
            await self.changed.wait()

    async def stop(self) -> None:
        """Stop serving and wait until the socket is closed."""
        self.scope.cancel()
        await self.stopped.wait()


async def start_sfu(nursery: trio.Nursery, config: SfuConfig | None = None, port: int = 0,
                    record: bool = False, key: bytes = CALL_KEY) -> RunningSfu:
    """Start a unit; with ``record``, keep a copy of every datagram it is handed."""
    sfu = Sfu(key, config)
    host, bound = sfu.bind("127.0.0.1", port)
    running = RunningSfu(sfu, SfuGrant(host, bound, key), trio.CancelScope())
    if record:
        handle = sfu.handle

        def recording(data: bytes, peer: tuple[str, int], now: float) -> None:
            running.received.append(data)
            handle(data, peer, now)
            running.changed.set()
            running.changed = trio.Event()

        sfu.handle = recording  # type: ignore[method-assign]

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with running.scope:
                await sfu.serve(task_status=task_status)
        finally:
            running.stopped.set()

    await nursery.start(run)
    return running


async def start_relay_with_calls(nursery: trio.Nursery, db: Path, grant: SfuGrant | None,
                                 config: RelayConfig | None = None, record: bool = False
                                 ) -> RunningServer[Relay, SqliteRelayStore]:
    """A relay on ``db`` whose calls go through the unit of ``grant``."""
    store = SqliteRelayStore(db)
    return await start_server(nursery, Relay(store, config, sfu=grant), store, relay_serve,
                              record=record)


async def start_social_with_calls(nursery: trio.Nursery, db: Path, grant: SfuGrant | None,
                                  record: bool = False
                                  ) -> RunningServer[SocialServer, SqliteSocialStore]:
    """A social server on ``db`` whose calls go through the unit of ``grant``."""
    store = SqliteSocialStore(db)
    crowd = dataclasses.replace(FAST, registration_burst=100)  # 51 callers from one address
    return await start_server(nursery, SocialServer(store, crowd, sfu=grant), store,
                              social_serve, record=record)


@dataclass
class Phone:
    """A session whose receive loop runs: what it showed, and an event per ring."""

    session: Any
    shown: list[Any] = field(default_factory=list)
    rang: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)

    def show(self, item: Any) -> None:
        self.shown.append(item)
        if item.kind == "call":
            self.rang.set()
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, predicate: Callable[[Any], bool]) -> Any:
        """The first item shown that ``predicate`` accepts (waiting for it)."""
        while True:
            found = next((item for item in self.shown if predicate(item)), None)
            if found is not None:
                return found
            await self._changed.wait()


@contextlib.asynccontextmanager
async def phones(*clients: Any) -> AsyncIterator[list[Phone]]:
    """A session per client, each receiving in the background until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(client.session()) for client in clients]
        async with trio.open_nursery() as nursery:
            found = [Phone(session) for session in sessions]
            for phone in found:
                nursery.start_soon(phone.session.receive, phone.show, math.inf)
            yield found
            nursery.cancel_scope.cancel()


def open_call(session: Any, grant: Grant, profile: MediaProfile, *, peer: str | None = None,
              group_id: bytes | None = None, random: Any = system_random,
              **options: Any) -> ActiveCall:
    """The :class:`ActiveCall` ``session.run_call`` would make (kept, to look inside)."""
    if hasattr(session, "groups"):  # private
        allowed = session._call_allowed(peer, group_id)
    else:
        allowed = session._call_allowed(peer)
    return ActiveCall(session, grant, profile, allowed=allowed, random=random, **options)


async def run_open_call(session: Any, call: ActiveCall, seconds: float) -> CallReport:
    """Run a call made by :func:`open_call` as ``session.run_call`` does."""
    for frame in session.call_book.open(call):
        await session._on_call_push(frame)
    try:
        return await call.run(seconds)
    finally:
        session.call_book.close(call.call_id)


class Logged:
    """A child process whose stderr lines are collected (and waited for)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str | Callable[[str], bool], timeout: float = 30.0) -> None:
        """Wait (bounded) until a stderr line contains ``text`` (or satisfies it)."""
        check = text if callable(text) else (lambda line: text in line)
        with self._changed:
            if not self._changed.wait_for(lambda: any(check(line) for line in self.lines),
                                          timeout):
                self.kill()
                pytest.fail(f"no {text!r} from {self.process.args}: " + "".join(self.lines))

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def output(self, timeout: float = 60.0) -> str:
        """Stdout once the process has ended on its own (exit code 0 required)."""
        stdout, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, "".join(self.lines)
        return stdout

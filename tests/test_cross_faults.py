"""Cross-transport chats through faults, with real server processes: the social server and the
relay each killed (SIGKILL) and restarted mid-conversation, and the link between them cut and
restored (a proxy on the server-to-server link). Nothing is lost and nothing arrives twice."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from client.core.cross_outbox import CrossPending
from client.private.received import Received
from client.social.state import SocialEvent
from server.calls.keyfile import write_key_file
from tests.fault_support import RelayProcess, ServerProcess, SocialProcess, free_port, reconnecting
from tests.federation_harness import opted_in
from tests.link_proxy import LinkProxy

MESSAGES = int(os.environ.get("E2E_FAULT_MESSAGES", "36"))


async def test_kills_and_a_cut_link_lose_and_duplicate_nothing(nursery, tmp_path: Path) -> None:
    key_file = tmp_path / "peer.key"
    write_key_file(key_file)
    relay_port, social_port, relay_peer, social_peer = (free_port() for _ in range(4))
    to_social, to_relay = LinkProxy(("127.0.0.1", social_peer)), LinkProxy(
        ("127.0.0.1", relay_peer))
    await nursery.start(to_social.run)
    await nursery.start(to_relay.run)
    peer = ["--peer-key-file", str(key_file)]

    def relay_process() -> RelayProcess:
        return RelayProcess(tmp_path / "relay.db", relay_port, [
            "--peer-listen", f"127.0.0.1:{relay_peer}",
            "--peer-social", f"127.0.0.1:{to_social.port}", *peer])

    def social_process() -> SocialProcess:
        return SocialProcess(tmp_path / "social.db", social_port, [
            "--peer-listen", f"127.0.0.1:{social_peer}",
            "--peer-relay", f"127.0.0.1:{to_relay.port}", *peer])

    running: dict[str, ServerProcess] = {}

    async def start(name: str, make: Callable[[], ServerProcess]) -> None:
        running[name] = await trio.to_thread.run_sync(make)

    await start("relay", relay_process)
    await start("social", social_process)
    try:
        await _conversation(tmp_path, relay_port, social_port, running, start,
                            relay_process, social_process, to_social, to_relay)
    finally:
        for process in running.values():
            process.kill()


async def _conversation(tmp_path: Path, relay_port: int, social_port: int,
                        running: dict[str, ServerProcess], start: Any, relay_process: Any,
                        social_process: Any, to_social: LinkProxy, to_relay: LinkProxy) -> None:
    alice, bob = await opted_in(tmp_path, relay_port, social_port)
    to_bob: list[SocialEvent] = []
    to_alice: list[Received] = []

    async def round_of(open_session: Any, got: list[Any], to: str = "",
                       text: str | None = None) -> None:
        """Receive what waits, keep ``text`` (if any) for ``to`` once, and try to send what
        is kept."""
        queued = text is None

        async def work(session: Any) -> None:
            nonlocal queued
            await session.receive(got.append)
            if not queued:
                session.queue_cross_text(to, text)
                queued = True
            try:
                await session.flush_cross()
            except CrossPending:
                pass  # the other server or the link is down: kept for a later round

        await reconnecting(open_session, work)

    async def kill(name: str) -> None:
        running[name].kill()

    for i in range(MESSAGES):
        if i == MESSAGES // 6:  # the social server dies with the conversation going on
            await kill("social")
            await round_of(alice.session, to_alice, "bob@social", f"a{i}")
            await start("social", social_process)
        elif i == MESSAGES // 3:  # then the relay
            await kill("relay")
            await round_of(bob.session, to_bob, "alice@private", f"b{i}")
            await start("relay", relay_process)
        elif i == MESSAGES // 2:  # the link between them is cut for a while
            to_social.cut()
            to_relay.cut()
        elif i == 2 * MESSAGES // 3:
            to_social.restore()
            to_relay.restore()
        if i != MESSAGES // 6:
            await round_of(alice.session, to_alice, "bob@social", f"a{i}")
        if i != MESSAGES // 3:
            await round_of(bob.session, to_bob, "alice@private", f"b{i}")
    for _ in range(2):  # everything kept goes, then everything sent arrives
        await round_of(alice.session, to_alice)
        await round_of(bob.session, to_bob)
    assert alice.state.cross_outbox.pending() == [] == bob.state.cross_outbox.pending()
    assert [e.text for e in to_bob if e.warning is None] == [f"a{i}" for i in range(MESSAGES)]
    assert [m.text for m in to_alice if m.warning is None] == [
        f"b{i}" for i in range(MESSAGES)]
    assert to_social.connections > 1 and to_relay.connections > 1  # the link came back

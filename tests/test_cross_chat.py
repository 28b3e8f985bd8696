"""Chats across the transports, end to end encrypted: a private and a social account, in-process
servers joined by the server-to-server link."""

from __future__ import annotations

from pathlib import Path

from client.cli.private import verify_report
from tests import relay_harness, social_harness
from tests.federation_harness import start_federated


async def test_a_private_and_a_social_account_chat_end_to_end(nursery, tmp_path: Path) -> None:
    fed = await start_federated(nursery, tmp_path)
    alice = fed.private(tmp_path / "alice")
    bob = fed.social_client(tmp_path / "bob")
    await relay_harness.register(alice, "alice")
    await social_harness.register(bob, "bob")
    async with relay_harness.session_of(alice) as a:
        await a.cross_set(True)
    async with social_harness.session_of(bob) as b:
        status = await b.cross_on()
        assert status.outcome == "made"
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob@social", "hello bob")
    got = await social_harness.drain(bob)
    assert [(e.conversation, e.sender, e.text) for e in got] == [
        ("alice@private", "alice@private", "hello bob")]
    async with social_harness.session_of(bob) as b:
        await b.send_text("alice@private", "hello alice")
        bobs_number = b.cross_safety_number("alice@private")
    received = await relay_harness.drain(alice)
    assert [(m.sender, m.text) for m in received] == [("bob@social", "hello alice")]
    report = verify_report(alice.state, "bob@social", accept=False)
    assert report.safety_number == bobs_number

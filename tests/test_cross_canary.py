"""Canaries: what must never reach a server, linked or not, across the transports or not.

A private account linked to a social account, both taking cross-transport chats, writes
canaries into private messages, a private group's name, a contact's name and a file, and both
sides write another canary into their cross-transport messages. Afterwards (and after the
account is unlinked and it all happens again) the social server's database, its log (every
level), the bytes its clients sent it and every request the relay handed it over the
server-to-server link (opened) hold neither canary; the relay's hold no cross-transport canary.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests import relay_harness, social_harness
from tests.federation_harness import database_bytes, server_logs, start_federated

PRIVATE_CANARY = "zqcanary" + secrets.token_hex(8)
"""In private messages, a group's name, a contact's name and a file: never at the social
server."""
CROSS_CANARY = "xqcanary" + secrets.token_hex(8)
"""In cross-transport messages: at neither server."""


async def test_no_canary_reaches_a_server_that_must_not_read_it(nursery, tmp_path: Path) -> None:
    with server_logs("e2e.social") as social_logs, server_logs("e2e.relay") as relay_logs:
        fed = await start_federated(nursery, tmp_path, record=True)
        alice = fed.private(tmp_path / "alice")
        carol = fed.private(tmp_path / "carol")
        contact = fed.private(tmp_path / "contact")
        bob = fed.social_client(tmp_path / "bob")
        for client, name in ((alice, "alice"), (carol, "carol"), (contact, PRIVATE_CANARY)):
            await relay_harness.register(client, name)
        await social_harness.register(bob, "bob")
        async with social_harness.session_of(bob) as b:
            await b.cross_on()
        attachment = tmp_path / "note.txt"
        attachment.write_text(f"a file about {PRIVATE_CANARY}")
        async with relay_harness.session_of(alice) as a:
            await a.cross_set(True)
            await a.set_profile("Alice", "hello")
            assert bob.state.account is not None
            await a.link_account(bob.state.account, bob.state.device_id, bob.state.identity())
        for round_ in ("linked", "unlinked"):
            async with relay_harness.session_of(alice) as a:
                await a.send_text("carol", f"{round_}: {PRIVATE_CANARY}")
                await a.send_text(PRIVATE_CANARY, f"{round_}: hello contact")
                await a.group_create(f"{round_} {PRIVATE_CANARY}"[:64], ["carol"])
                await a.group_send_text(f"{round_} {PRIVATE_CANARY}"[:64], PRIVATE_CANARY)
                await a.send_file("carol", attachment, caption=PRIVATE_CANARY)
                await a.post_status(f"{round_}: posted")
                await a.send_text("bob@social", f"{round_}: {CROSS_CANARY}")
            async with social_harness.session_of(bob) as b:
                await b.send_text("alice@private", f"{round_}: {CROSS_CANARY} back")
            got = await social_harness.drain(bob)
            assert [e.text for e in got] == [f"{round_}: {CROSS_CANARY}"]
            received = await relay_harness.drain(alice)
            assert [m.text for m in received] == [f"{round_}: {CROSS_CANARY} back"]
            assert len([m for m in await relay_harness.drain(carol) if m.text]) >= 3
            if round_ == "linked":
                async with relay_harness.session_of(alice) as a:
                    await a.unlink_account()
            await fed.shared()
        await fed.relay.stop()
        await fed.social.stop()
    social_sees = {
        "the social database": database_bytes(tmp_path / "social.db"),
        "the social server's log": social_logs.text.encode(),
        "what its clients sent it": bytes(fed.social.received),
        "what the relay handed it": bytes(fed.social_from_peer),
    }
    relay_sees = {
        "the relay database": database_bytes(tmp_path / "relay.db"),
        "the relay's log": relay_logs.text.encode(),
        "what its clients sent it": bytes(fed.relay.received),
        "what the social server handed it": bytes(fed.relay_from_peer),
    }
    assert all(social_sees.values()) and all(relay_sees.values())  # each saw traffic
    for where, data in social_sees.items():
        for canary in (PRIVATE_CANARY, CROSS_CANARY):
            assert canary.encode() not in data, (canary, where)
    for where, data in relay_sees.items():
        assert CROSS_CANARY.encode() not in data, where
    # The recordings can find a canary: the contact's name is the relay's routing metadata.
    assert PRIVATE_CANARY.encode() in relay_sees["what its clients sent it"]
    # The shared profile did reach the social server while linked (the consented part).
    assert b"Alice" in social_sees["what the relay handed it"]

"""Faults: the relay SIGKILLed at random points while four clients send and receive.

After every restart the clients reconnect with backoff and resend what the relay had not
acknowledged (the same payload, so the same payload id). At the end every message is delivered
exactly once and in order per sender. ``E2E_FAULT_KILLS`` sets how many kills (``make faults``
runs more than CI).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import trio

from client.private.received import Received
from e2e_proto.payload import Payload
from tests.fault_support import RelayProcess, free_port, send_and_receive
from tests.relay_harness import make_client, register

KILLS = int(os.environ.get("E2E_FAULT_KILLS", "2"))
MESSAGES = int(os.environ.get("E2E_FAULT_MESSAGES", "15"))
NAMES = ["ann", "ben", "cat", "dan"]


async def test_random_sigkills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    port = free_port()
    relay = RelayProcess(tmp_path / "relay.db", port)
    rng = random.Random(7)
    try:
        clients = {n: make_client(tmp_path / n, port) for n in NAMES}
        for name, client in clients.items():
            await register(client, name)
        plans: dict[str, list[tuple[str, Payload]]] = {}
        for name in NAMES:
            plans[name] = []
            for i in range(MESSAGES):
                peer = rng.choice([n for n in NAMES if n != name])
                plans[name].append((peer, Payload.new("text", i, text=f"{name} {i}", to=peer)))
        expected = {(peer, name): [p.fields["text"] for q, p in plans[name] if q == peer]
                    for name in NAMES for peer in NAMES if peer != name}
        inboxes: dict[str, list[Received]] = {n: [] for n in NAMES}
        outboxes = {n: list(plans[n]) for n in NAMES}
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for name in NAMES:
                nursery.start_soon(send_and_receive, clients[name].session, outboxes[name],
                                   inboxes[name], done)
            for _ in range(KILLS):
                await trio.sleep(rng.uniform(0.05, 0.5))  # a random point in the traffic
                relay.kill()
                relay = RelayProcess(tmp_path / "relay.db", port)
            with trio.fail_after(120):
                while any(outboxes.values()) or sum(map(len, inboxes.values())) < sum(
                        map(len, expected.values())):
                    await trio.sleep(0.05)  # polling for the end of the traffic
            done.set()
        for (receiver, sender), texts in expected.items():
            got = [m.text for m in inboxes[receiver] if m.sender == sender]
            assert got == texts, (receiver, sender)
        assert all(m.warning is None for box in inboxes.values() for m in box)
    finally:
        relay.kill()

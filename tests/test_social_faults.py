"""Faults on the social server: random SIGKILLs, storage faults, and tokens used to impersonate.

Modelled on ``tests/test_faults.py`` and ``tests/test_relay_kill.py`` (random kills) and
``tests/test_relay_limits.py::test_storage_fault_refuses_sends_and_serves_reads`` (storage).
``E2E_FAULT_KILLS`` sets how many kills and ``E2E_FAULT_MESSAGES`` how many messages each
client sends (``make faults`` runs more than CI).

Each send carries a client-chosen ``client_id`` that the resend after a failure repeats, so a
send the server committed but could not acknowledge before it died is not stored twice: every
message must reach every device exactly once and in order per sender.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from pathlib import Path
from typing import Any

import pytest
import trio

from client.core.connection import ConnectionLost, ServerError
from client.core.errors import ClientError
from client.social.errors import SocialError
from client.social.session import SocialClient, SocialSession
from client.social.state import SocialEvent
from e2e_proto import social_api as api
from tests.fault_support import (
    SocialProcess,
    end_storage_fault,
    free_port,
    reconnecting,
    start_storage_fault,
)
from tests.social_harness import (
    drain,
    login,
    make_client,
    raw,
    raw_register,
    register,
    session_of,
    social_with_alice_and_bob,
    start_social,
)

KILLS = int(os.environ.get("E2E_FAULT_KILLS", "2"))
MESSAGES = int(os.environ.get("E2E_FAULT_MESSAGES", "15"))
NAMES = ["ann", "ben", "cat", "dan"]


class _Device:
    """One client device in the kill test: what it must send, what was acknowledged, what
    arrived, and which texts it had to resend."""

    def __init__(self, account: str, client: SocialClient, outbox: list[tuple[str, str]]) -> None:
        self.account = account
        self.client = client
        self.outbox = outbox
        self.acked: list[tuple[str, int, str]] = []  # (peer, message id, text)
        self.inbox: list[SocialEvent] = []
        self.resent: set[str] = set()


async def _device_loop(device: _Device, done: trio.Event) -> None:
    """Send every text in order (resending across server deaths) and keep receiving."""

    async def work(session: SocialSession) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.receive, device.inbox.append, math.inf)
            while device.outbox:
                peer, text = device.outbox[0]
                # The same idempotency key on every attempt: a resend after a lost
                # answer must not store the message twice.
                client_id = hashlib.sha256(text.encode()).digest()[:16]
                try:
                    message_id = await session.send_text(peer, text, client_id)
                except BaseException:
                    device.resent.add(text)  # may have been stored: counted if so
                    raise
                device.acked.append((peer, message_id, text))
                device.outbox.pop(0)  # acknowledged by the server: never sent again
            await done.wait()
            nursery.cancel_scope.cancel()

    await reconnecting(device.client.session, work)


def _expected(devices: dict[str, _Device], receiver: str, reader: str) -> dict[str, list[int]]:
    """Per sender, the acknowledged message ids the device ``reader`` of ``receiver`` must get."""
    expected: dict[str, list[int]] = {}
    for name, sender in devices.items():  # one sending device per account
        if name != reader and sender.acked:
            expected[sender.account] = [m for peer, m, _ in sender.acked
                                        if receiver in (peer, sender.account)]
    return expected


async def test_random_sigkills_lose_and_duplicate_no_acknowledged_message(
        tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "social.db"
    server = SocialProcess(db, port)
    rng = random.Random(11)
    try:
        devices: dict[str, _Device] = {}
        for name in NAMES:
            plan = [(rng.choice([n for n in NAMES if n != name]), f"{name} {i}")
                    for i in range(MESSAGES)]
            devices[name] = _Device(name, make_client(tmp_path / name, port), plan)
            await register(devices[name].client, name)
        # ann's second device sends nothing and must see what ann sends and receives.
        devices["ann2"] = _Device("ann", make_client(tmp_path / "ann2", port), [])
        await login(devices["ann2"].client, "ann")
        done = trio.Event()
        kills = 0
        async with trio.open_nursery() as nursery:
            for device in devices.values():
                nursery.start_soon(_device_loop, device, done)
            for _ in range(KILLS):
                await trio.sleep(rng.uniform(0.05, 0.5))  # a random point in the traffic
                server.kill()
                kills += 1
                server = SocialProcess(db, port)

            def complete() -> bool:
                if any(d.outbox for d in devices.values()):
                    return False
                for reader, device in devices.items():
                    got = {e.message for e in device.inbox if e.kind == "message"}
                    for ids in _expected(devices, device.account, reader).values():
                        if not set(ids) <= got:
                            return False
                return True

            with trio.fail_after(120):
                while not complete():
                    await trio.sleep(0.05)  # polling for the end of the traffic
            done.set()
        for reader, device in devices.items():
            messages = [e for e in device.inbox if e.kind == "message"]
            assert len({e.message for e in messages}) == len(messages), reader  # none twice
            for sender, ids in _expected(devices, device.account, reader).items():
                got = [e for e in messages if e.sender == sender]
                assert [e.message for e in got] == ids, (reader, sender)  # no extra copies
        sent = sum(len(d.acked) for d in devices.values())
        assert sent == len(NAMES) * MESSAGES
        resends = sum(len(d.resent) for d in devices.values())
        print(f"social kills: {kills}, messages acknowledged: {sent}, lost: 0, "
              f"sends retried after a failure: {resends}, duplicated: 0")
    finally:
        server.kill()


def _counts(store: Any) -> tuple[int, ...]:
    db = store._db
    return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in
                 ("messages", "message_text", "envelopes", "reactions", "pins", "events",
                  "conversations", "members", "accounts", "devices"))


@pytest.mark.parametrize("fault", ["read-only", "disk-full"])
async def test_storage_fault_refuses_writes_and_serves_reads(nursery, tmp_path: Path,
                                                             fault: str) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as a:
        acked = [await a.send_text("bob", "stored before the fault")]
    db = social.store._db
    start_storage_fault(db, fault)
    async with session_of(alice) as a:  # logging in with a token needs no write
        with pytest.raises(SocialError) as refused:
            for i in range(200):  # a full disk shows once the pages run out
                acked.append(await a.send_text("bob", f"during the fault {i} " + "x" * 2000))
        assert refused.value.code == api.UNAVAILABLE
        assert "cannot store" in str(refused.value)
        assert [row[0] for row in db.execute("SELECT id FROM messages ORDER BY id")] == acked
        before = _counts(social.store)
        for kind, fields in (("send", {"conversation": "bob", "text": "again"}),
                             ("react", {"message": acked[0], "emoji": "👍"}),
                             ("pin", {"message": acked[0]}),
                             ("group_create", {"name": "club", "members": ["bob"]}),
                             ("secret", {"conversation": "bob"})):
            try:
                await a.connection.request(kind, **fields)
            except ServerError as exc:
                assert exc.code == api.UNAVAILABLE, kind
                assert _counts(social.store) == before, kind  # a refused request stores nothing
            else:  # a small write may still fit on a full disk; never on a read-only one
                assert fault == "disk-full", kind
                before = _counts(social.store)
                if kind == "send":
                    acked.append(db.execute("SELECT MAX(id) FROM messages").fetchone()[0])
        # Reads are still served, on the same connection.
        page, _ = await a.history("bob", limit=100)
        assert [m.id for m in page] == acked[-100:]
        assert [m.id for m in await a.search("stored before")] == [acked[0]]
    with pytest.raises(ClientError, match="unavailable"):
        await login(make_client(tmp_path / "alice2", social.port), "alice")  # a new device
    async with session_of(bob) as b:
        page, _ = await b.history("alice", limit=100)
        assert [m.id for m in page] == acked[-100:]
    end_storage_fault(db)
    got = await drain(bob)
    assert [e.message for e in got if e.kind == "message"] == acked  # all, once, in order
    async with session_of(alice) as a:  # the store works again after the fault
        acked.append(await a.send_text("bob", "after the fault"))
    assert [e.message for e in await drain(bob)] == acked[-1:]


async def test_a_token_acts_only_as_its_own_device(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice = (await raw_register(social.port, "alice"))["token"]
    bob = (await raw_register(social.port, "bob"))["token"]
    await raw_register(social.port, "carol")
    store = social.store
    async with raw(social.port) as c:
        await c.request("auth", token=bob)
        to_carol = (await c.request("send", conversation="carol", text="bob to carol"))["message"]
        (bob_cursor,) = store._db.execute(
            "SELECT cursor FROM devices WHERE account = 'bob'").fetchone()
    async with raw(social.port) as c:
        await c.request("auth", token=alice)
        # Fields naming another account or device are ignored: alice acts as alice.0 only.
        sent = await c.request("send", conversation="carol", text="hi", account="bob",
                               device=7, **{"from": "bob"})
        message = store.message(sent["message"])
        assert message is not None and (message.sender, message.device_id) == ("alice", 0)
        await c.request("ack", seq=2**62, account="bob", device_id=0)
        assert store.cursor("bob", 0) == bob_cursor
        # A second login on a logged-in connection is refused; the connection stays alice's.
        for kind, fields in (("auth", {"token": bob}),
                             ("login", {"account": "bob", "password": "whatever1"})):
            with pytest.raises(ServerError) as refused:
                await c.request(kind, **fields)
            assert refused.value.code == api.BAD_REQUEST
        assert (await c.request("send", conversation="bob", text="still alice"))["conversation"] \
            == "bob"
        # Naming carol means alice's conversation with carol, never bob's with carol.
        page = (await c.request("history", conversation="carol"))["messages"]
        assert [m["id"] for m in page] == [sent["message"]]
        for kind in ("react", "pin", "unpin", "unreact"):
            with pytest.raises(ServerError) as refused:
                await c.request(kind, message=to_carol,
                                **({"emoji": "👍"} if kind == "react" else {}))
            assert refused.value.code == api.NOT_MEMBER, kind
        assert all(m.id != to_carol for m in store.search("alice", "carol", 10))
        await c.request("publish_prekeys", identity_key=bytes(32), signed_prekey=None,
                        one_time_prekeys=[], account="bob", device_id=0)
        assert [d.identity_key for d in store.devices("bob")] == [None]
    # What the server keeps of a token (its hash, as a leaked database would show) is no token.
    (stored,) = store._db.execute("SELECT token_hash FROM devices WHERE account = 'bob'"
                                  ).fetchone()
    async with raw(social.port) as c:
        with pytest.raises(ServerError) as refused:
            await c.request("auth", token=stored)
        assert refused.value.code == api.BAD_TOKEN


async def test_a_token_that_expires_on_an_open_connection_is_refused(
        nursery, tmp_path: Path) -> None:
    now = [1_000_000.0]
    social = await start_social(nursery, tmp_path / "social.db", clock=lambda: now[0])
    alice = (await raw_register(social.port, "alice"))["token"]
    await raw_register(social.port, "bob")
    async with raw(social.port) as c:
        await c.request("auth", token=alice)
        await c.request("send", conversation="bob", text="before the expiry")
        now[0] += 31 * 24 * 3600.0  # past the default 30 days
        before = _counts(social.store)
        with pytest.raises(ServerError) as refused:
            await c.request("send", conversation="bob", text="after the expiry")
        assert refused.value.code == api.TOKEN_EXPIRED
        assert _counts(social.store) == before
        with pytest.raises(ConnectionLost):  # and the server closed the connection
            await c.request("ping")

"""Chats across the transports, end to end encrypted: private and social accounts, in-process
servers joined by the server-to-server link (the first two tests with the relay on each of its
stores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from client.cli.private import verify_report
from client.core.cross_outbox import CrossPending
from client.core.errors import ClientError
from client.private.session import PrivateClient
from client.social.session import SocialClient
from e2e_proto.devices import DeviceList
from e2e_proto.federation import PEER_DELIVER
from server.common.requests import RequestError
from tests import relay_harness, social_harness
from tests.federation_harness import Federated, opted_in, start_federated


async def _opted_in(fed: Federated, tmp_path: Path) -> tuple[PrivateClient, SocialClient]:
    return await opted_in(tmp_path, fed.relay.port, fed.social.port)


async def test_a_private_and_a_social_account_chat_end_to_end(nursery, tmp_path: Path,
                                                              relay_db: Path | str) -> None:
    fed = await start_federated(nursery, tmp_path, db=relay_db)
    alice, bob = await _opted_in(fed, tmp_path)
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob@social", "hello bob")
    got = await social_harness.drain(bob)
    assert [(e.kind, e.conversation, e.sender, e.text, e.secret) for e in got] == [
        ("message", "alice@private", "alice@private", "hello bob", True)]
    async with social_harness.session_of(bob) as b:
        await b.send_text("alice@private", "hello alice")
        bobs_number = b.cross_safety_number("alice@private")
    received = await relay_harness.drain(alice)
    assert [(m.sender, m.peer, m.text) for m in received] == [
        ("bob@social", "bob@social", "hello alice")]
    # Both sides compute the same 60 digits over both accounts' full names and keys.
    report = verify_report(alice.state, "bob@social", accept=False)
    assert report.safety_number == bobs_number and not report.key_changed
    assert len(bobs_number.replace(" ", "")) == 60


async def test_every_device_of_both_accounts_gets_each_message(nursery, tmp_path: Path,
                                                               relay_db: Path | str) -> None:
    fed = await start_federated(nursery, tmp_path, db=relay_db)
    alice, bob = await _opted_in(fed, tmp_path)
    alice_laptop = fed.private(tmp_path / "alice-laptop")
    await relay_harness.link(alice, alice_laptop, "alice", "laptop")
    bob_phone = fed.social_client(tmp_path / "bob-phone")
    await social_harness.login(bob_phone, "bob")
    async with social_harness.session_of(bob_phone) as phone:
        joined = await phone.cross_on()
        assert joined.outcome == "joined"
    async with social_harness.session_of(bob) as b:
        with pytest.raises(ClientError, match="does not start with"):
            await b.cross_approve(1, "00" * 8)
        assert await b.cross_approve(1, joined.device_key.hex()[:16]) == [0, 1]
    async with relay_harness.session_of(alice_laptop) as laptop:
        await laptop.send_text("bob@social", "from alice's laptop")
    for device in (bob, bob_phone):
        assert [e.text for e in await social_harness.drain(device)] == ["from alice's laptop"]
    assert [(m.text, m.outgoing, m.peer) for m in await relay_harness.drain(alice)] == [
        ("from alice's laptop", True, "bob@social")]
    async with social_harness.session_of(bob_phone) as phone:
        await phone.send_text("alice@private", "from bob's phone")
    for device in (alice, alice_laptop):
        assert [(m.sender, m.sender_device, m.text) for m in await relay_harness.drain(device)
                ] == [("bob@social", 1, "from bob's phone")]
    mine = await social_harness.drain(bob)
    assert [(e.sender, e.conversation, e.text) for e in mine] == [
        ("bob", "alice@private", "from bob's phone")]
    # The phone is taken off: alice's client learns it from the refused send and resends to
    # the devices listed now; the phone can no longer send across.
    async with social_harness.session_of(bob) as b:
        assert await b.cross_remove(1) == [0]
        with pytest.raises(ClientError, match="last one"):
            await b.cross_remove(0)
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob@social", "only to the first device")
    assert [e.text for e in await social_harness.drain(bob)] == ["only to the first device"]
    assert [e.warning is not None for e in await social_harness.drain(bob_phone)] == [True]
    async with social_harness.session_of(bob_phone) as phone:
        with pytest.raises(ClientError, match="not one of this account's cross-transport"):
            await phone.send_text("alice@private", "still here?")


async def test_a_device_unlinked_during_a_cross_send_is_a_device_mismatch(
        nursery, tmp_path: Path, relay_db: Path | str) -> None:
    """The relay stores the copies for the sender's other devices after the social server took
    the send: one unlinked meanwhile is refused as ``device_mismatch`` (as a send's), so the
    client sends again to the devices listed now, and bob sees the message once."""
    fed = await start_federated(nursery, tmp_path, db=relay_db)
    alice, bob = await _opted_in(fed, tmp_path)
    laptop = fed.private(tmp_path / "alice-laptop")
    await relay_harness.link(alice, laptop, "alice", "laptop")
    federation, store = fed.relay_server.federation, fed.relay_server.store
    assert federation is not None
    deliver = federation.peer.request
    refusals: list[str] = []

    async with relay_harness.session_of(alice) as a:
        aik = a._require_primary()
        listed = await a.device_list("alice", refresh=True)
        without = DeviceList("alice", listed.version + 1,
                             tuple((i, key) for i, key in listed.devices if i != 1)).sign(aik)

        async def laptop_unlinked_meanwhile(kind: str, **fields: Any) -> dict[str, Any]:
            answer = await deliver(kind, **fields)
            if kind == PEER_DELIVER and not refusals:
                refusals.append(kind)
                await store.replace_device_list(
                    "alice", without.device_list.version, without.body, without.signature,
                    {i: key.raw for i, key in without.device_list.devices}, [], 0.0)
            return answer

        federation.peer.request = laptop_unlinked_meanwhile  # type: ignore[method-assign]
        await a.send_text("bob@social", "while the laptop goes")
        assert (await a.device_list("alice")).device_ids == [0]
    assert refusals == [PEER_DELIVER]
    assert [e.text for e in await social_harness.drain(bob)] == ["while the laptop goes"]


async def test_the_relay_refuses_a_malformed_bundle_request_from_the_social_server(
        nursery, tmp_path: Path) -> None:
    """device_ids that are not device ids (here lists, which cannot even be compared as set
    members) are refused as bad_request, not an internal error."""
    fed = await start_federated(nursery, tmp_path)
    await _opted_in(fed, tmp_path)
    federation = fed.relay_server.federation
    assert federation is not None
    for wanted in ([[0]], [0, 0], [7], "0"):
        with pytest.raises(RequestError) as refused:
            await federation.bundles({"account": "alice", "requester": "bob@social",
                                      "device_ids": wanted})
        assert refused.value.code == "bad_request", wanted
    assert len((await federation.bundles({"account": "alice", "requester": "bob@social",
                                          "device_ids": [0]}))["bundles"]) == 1


async def test_whoever_did_not_opt_in_cannot_be_reached(nursery, tmp_path: Path) -> None:
    fed = await start_federated(nursery, tmp_path)
    alice, bob = await _opted_in(fed, tmp_path)
    carol = fed.social_client(tmp_path / "carol")
    await social_harness.register(carol, "carol")
    dave = fed.private(tmp_path / "dave")
    await relay_harness.register(dave, "dave")
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(ClientError, match="carol@social does not take cross-transport"):
            await a.send_text("carol@social", "hi carol")
        with pytest.raises(ClientError, match="unknown user"):
            await a.send_text("nobody@social", "hi")
    async with social_harness.session_of(bob) as b:
        with pytest.raises(ClientError, match="dave@private does not take cross-transport"):
            await b.send_text("alice@private".replace("alice", "dave"), "hi dave")
    async with relay_harness.session_of(dave) as d:  # not opted in: cannot start one either
        with pytest.raises(ClientError, match="cross-transport chats are off for this account"):
            await d.send_text("bob@social", "hi bob")
    async with social_harness.session_of(bob) as b:
        await b.cross_off()
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(ClientError, match="bob@social does not take cross-transport"):
            await a.device_list("bob@social", refresh=True)
    # Nothing was kept to be sent later: each refusal was final and said so.
    assert alice.state.cross_outbox.pending() == [] and bob.state.cross_outbox.pending() == []
    assert await social_harness.drain(carol) == []


async def test_a_changed_cross_identity_holds_messages_until_accepted(nursery,
                                                                      tmp_path: Path) -> None:
    fed = await start_federated(nursery, tmp_path)
    alice, bob = await _opted_in(fed, tmp_path)
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob@social", "first")
    assert [e.text for e in await social_harness.drain(bob)] == ["first"]
    # The social server (or someone with bob's password) makes a new identity for bob.
    mallory = fed.social_client(tmp_path / "mallory")
    await social_harness.login(mallory, "bob")
    fed.social.store._db.execute("DELETE FROM cross_identities WHERE account = 'bob'")
    async with social_harness.session_of(mallory) as m:
        assert (await m.cross_on()).outcome == "made"
        await m.send_text("alice@private", "it is me, bob")
    got = await relay_harness.drain(alice)
    assert [m.text for m in got if m.warning is None] == []
    assert any("held" in (m.warning or "") for m in got)
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(ClientError, match="account key of 'bob@social' changed"):
            await a.send_text("bob@social", "are you there?")
    report = verify_report(alice.state, "bob@social", accept=True)
    assert report.key_changed and report.released == 1
    assert [m.text for m in await relay_harness.drain(alice)] == ["it is me, bob"]


async def test_a_send_whose_answer_is_lost_is_kept_once(nursery, tmp_path: Path) -> None:
    """The social server stores a delivery but its answer never reaches the relay: the sender
    keeps the message, sends it again (same payload id, same client_id), and bob sees it once;
    the same the other way."""
    fed = await start_federated(nursery, tmp_path)
    alice, bob = await _opted_in(fed, tmp_path)
    for federation in (fed.relay_server.federation, fed.social_server.federation):
        assert federation is not None
        federation.peer.timeout = 1.0
        real = federation.routes[PEER_DELIVER]
        hung = trio.Event()

        async def stored_then_silent(frame: dict, real=real, hung=hung) -> dict:  # type: ignore[type-arg]
            answer = await real(frame)
            if not hung.is_set():
                hung.set()
                await trio.sleep_forever()  # the answer is lost (the link hangs)
            return answer  # type: ignore[no-any-return]

        federation.routes[PEER_DELIVER] = stored_then_silent
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(CrossPending):
            await a.send_text("bob@social", "once")
    async with social_harness.session_of(bob) as b:
        with pytest.raises(CrossPending):
            await b.send_text("alice@private", "once too")
    assert len(alice.state.cross_outbox.pending()) == 1
    async with relay_harness.session_of(alice):  # a new session sends what was kept
        pass
    async with social_harness.session_of(bob):
        pass
    assert alice.state.cross_outbox.pending() == [] == bob.state.cross_outbox.pending()
    assert [e.text for e in await social_harness.drain(bob)] == ["once"]
    assert [m.text for m in await relay_harness.drain(alice)] == ["once too"]

"""Account links between a private and a social account: both sides sign, only the allow-listed
record is shared, the user reads what was shared, and unlinking deletes it at the social server.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from client.core.errors import ClientError
from client.private.session import PrivateClient
from client.social.session import SocialClient
from e2e_proto.account_link import (
    PRIVATE_SIDE,
    LinkRevocation,
    LinkStatement,
    SharedAccount,
    SharedDevice,
    SharedProfile,
    SharedRecord,
    SharedStatus,
)
from e2e_proto.keys import IdentityKeyPair
from server.federation.options import PeerSetup
from server.federation.peer import PeerUnavailable
from server.federation.relay import HAND_OVER_CLAIM, HandedOverElsewhere, RelayFederation
from server.federation.relay_store import SHARE
from server.relay.backends import open_backend
from server.relay.server import Relay
from tests import relay_harness, social_harness
from tests.fault_support import free_port
from tests.federation_harness import Federated, database_bytes, start_federated

PROFILE_NAME = "Alice Liddell"
ABOUT = "down the rabbit hole"
STATUS = "late for a very important date"


async def _accounts(fed: Federated, tmp_path: Path) -> tuple[PrivateClient, SocialClient]:
    alice = fed.private(tmp_path / "alice")
    bob = fed.social_client(tmp_path / "bob")
    await relay_harness.register(alice, "alice")
    await social_harness.register(bob, "bob")
    return alice, bob


async def _link(alice: PrivateClient, bob: SocialClient) -> bytes:
    async with social_harness.session_of(bob):  # its device key is published
        pass
    async with relay_harness.session_of(alice) as a:
        assert bob.state.account is not None
        return await a.link_account(bob.state.account, bob.state.device_id,
                                    bob.state.identity())


async def test_link_share_read_the_log_and_unlink(nursery, tmp_path: Path,
                                                  relay_db: Path | str) -> None:
    fed = await start_federated(nursery, tmp_path, db=relay_db)
    alice, bob = await _accounts(fed, tmp_path)
    async with relay_harness.session_of(alice) as a:
        await a.set_profile(PROFILE_NAME, ABOUT)  # before the link: shared when it is made
    link_id = await _link(alice, bob)
    async with relay_harness.session_of(alice) as a:
        await a.post_status(STATUS)
    await fed.shared()
    async with social_harness.session_of(bob) as b:
        linked = await b.request("linked")
    assert linked["linked"][:2] == ["alice", link_id]
    record = SharedRecord.decode(linked["record"])
    assert record.account.private_account == "alice"
    assert record.profile == SharedProfile(PROFILE_NAME, ABOUT)
    assert [s.text for s in record.statuses] == [STATUS]
    assert [d.name for d in record.devices] == ["primary"]
    assert record.devices[0].last_seen_ms is not None
    # The user reads what was shared, and when.
    async with relay_harness.session_of(alice) as a:
        report = await a.sharing_log()
    assert report.linked is not None and report.linked[:2] == (link_id, "bob")
    kinds = [e.kind for e in report.entries]
    assert kinds == ["linked", "shared", "shared"]
    assert report.entries[-1].record == record
    assert all(e.at > 0 for e in report.entries)
    # Unlinking stops sharing, and the social server deletes what it received.
    async with relay_harness.session_of(alice) as a:
        assert await a.unlink_account() == "bob"
        await a.set_profile(about="after the link")  # not shared any more
    await fed.shared()
    async with social_harness.session_of(bob) as b:
        gone = await b.request("linked")
    assert (gone["linked"], gone["record"], gone["received_at"]) == (None, None, None)
    social_db = fed.social.store._db
    for table in ("linked_accounts", "shared_records"):
        assert social_db.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)
    on_disk = database_bytes(tmp_path / "social.db")
    for text in (PROFILE_NAME, ABOUT, STATUS, "after the link", "primary"):
        assert text.encode() not in on_disk, text
    async with relay_harness.session_of(alice) as a:
        after = await a.sharing_log()
    assert [e.kind for e in after.entries] == ["linked", "shared", "shared", "unlinked",
                                               "deleted"]
    assert after.linked is None and all(e.record is None for e in after.entries)
    assert "display name" in after.entries[1].summary  # what was shared stays readable
    assert await fed.relay.store.federation.peer_items(1) == []


async def test_a_forged_statement_is_refused(nursery, tmp_path: Path) -> None:
    fed = await start_federated(nursery, tmp_path)
    alice, bob = await _accounts(fed, tmp_path)
    async with social_harness.session_of(bob):
        pass
    aik = alice.state.account_identity()
    assert aik is not None
    statement = LinkStatement("alice", aik.public_key, "bob", 0, bob.state.identity().public_key,
                              bytes(16), int(fed.relay_server.clock() * 1000))
    signed = statement.sign(aik, bob.state.identity())
    forged = IdentityKeyPair.generate()
    async with relay_harness.session_of(alice) as a:
        for fields in (
                # Not signed by bob's device key.
                {"private_signature": signed.private_signature,
                 "social_signature": forged.sign(b"e2e-proto/account-link/social/v1"
                                                 + signed.body)},
                # A body changed after signing (another social account).
                {"private_signature": signed.private_signature,
                 "social_signature": signed.social_signature,
                 "statement": signed.body.replace(b"bob", b"bod")},
                # Signatures swapped between the two roles.
                {"private_signature": signed.social_signature,
                 "social_signature": signed.private_signature}):
            request = {"statement": signed.body, **fields}
            with pytest.raises(Exception, match="link_refused|does not hold"):
                await a.connection.request("link_account", **request)
    assert fed.social.store.federation.live_link("bob") is None
    assert await fed.relay.store.federation.live_link("alice") is None


async def test_a_link_by_someone_else_is_refused(nursery, tmp_path: Path) -> None:
    fed = await start_federated(nursery, tmp_path)
    alice, bob = await _accounts(fed, tmp_path)
    mallory = fed.private(tmp_path / "mallory")
    await relay_harness.register(mallory, "mallory")
    mallory_social = fed.social_client(tmp_path / "mallory-social")
    await social_harness.register(mallory_social, "mallory")
    async with social_harness.session_of(bob), social_harness.session_of(mallory_social):
        pass
    # Mallory's own account, bob's social account, but a device key of mallory's: the social
    # server knows bob's device keys.
    async with relay_harness.session_of(mallory) as m:
        with pytest.raises(ClientError, match="not a key of that device"):
            await m.link_account("bob", 0, mallory_social.state.identity())
    # A statement naming alice's private account, signed by mallory's account key.
    mallory_aik = mallory.state.account_identity()
    assert mallory_aik is not None
    statement = LinkStatement("alice", mallory_aik.public_key, "mallory", 0,
                              mallory_social.state.identity().public_key, bytes(range(16)),
                              int(fed.relay_server.clock() * 1000))
    signed = statement.sign(mallory_aik, mallory_social.state.identity())
    async with relay_harness.session_of(mallory) as m:
        with pytest.raises(Exception, match="not this account's"):
            await m.connection.request("link_account", statement=signed.body,
                                       private_signature=signed.private_signature,
                                       social_signature=signed.social_signature)
    # A linked device of alice's (not the primary) cannot link: it has no account key.
    laptop = fed.private(tmp_path / "laptop")
    await relay_harness.link(alice, laptop, "alice", "laptop")
    async with relay_harness.session_of(laptop) as lap:
        with pytest.raises(ClientError, match="only the primary device"):
            await lap.link_account("bob", 0, bob.state.identity())
    for account in ("bob", "mallory"):
        assert fed.social.store.federation.live_link(account) is None
    for account in ("alice", "mallory"):
        assert await fed.relay.store.federation.live_link(account) is None


async def test_replayed_revocations_and_statements_are_refused(nursery, tmp_path: Path,
                                                               relay_db: Path | str) -> None:
    fed = await start_federated(nursery, tmp_path, db=relay_db)
    alice, bob = await _accounts(fed, tmp_path)
    first = await _link(alice, bob)
    stored = await fed.relay.store.federation.live_link("alice")
    assert stored is not None and stored.link_id == first
    aik = alice.state.account_identity()
    assert aik is not None
    revocation = LinkRevocation(first, int(fed.relay_server.clock() * 1000), PRIVATE_SIDE)
    old = {"revocation": revocation.body(), "signature": revocation.sign(aik)}
    async with relay_harness.session_of(alice) as a:
        await a.connection.request("unlink_account", **old)
        with pytest.raises(Exception, match="not_linked|not linked"):  # again: nothing to end
            await a.connection.request("unlink_account", **old)
    await fed.shared()
    second = await _link(alice, bob)
    assert second != first
    async with relay_harness.session_of(alice) as a:
        with pytest.raises(Exception, match="another link"):  # the old revocation, replayed
            await a.connection.request("unlink_account", **old)
        # A revocation of the live link signed by another key.
        other = LinkRevocation(second, int(fed.relay_server.clock() * 1000), PRIVATE_SIDE)
        with pytest.raises(Exception, match="does not hold"):
            await a.connection.request("unlink_account", revocation=other.body(),
                                       signature=IdentityKeyPair.generate().sign(
                                           other.signed_bytes()))
    assert await fed.relay.store.federation.live_link("alice") is not None
    assert fed.social.store.federation.live_link("bob") is not None
    # The first statement, replayed after its link ended: its link id is spent.
    async with relay_harness.session_of(alice) as a:
        await a.unlink_account()
        await fed.shared()
        with pytest.raises(Exception, match="link_refused|does not hold|ended"):
            await a.connection.request("link_account", statement=stored.body,
                                       private_signature=stored.private_signature,
                                       social_signature=stored.social_signature)


async def test_one_relay_node_at_a_time_hands_the_queue_over(tmp_path: Path,
                                                              relay_db: Path | str) -> None:
    """Nodes on one store take turns: while another holds the claim, the queue is left alone
    (the pump retries later); a failed hand-over keeps the item and gives the claim back."""
    async with open_backend(relay_harness.store_url(relay_db)) as (store, hub):
        relay = Relay(store, hub=hub, blob_dir=tmp_path / "blobs")
        nowhere = ("127.0.0.1", free_port())  # no social server listens there
        federation = RelayFederation(relay, PeerSetup(nowhere, (nowhere,), bytes(32)))
        record = SharedRecord(SharedAccount("alice", 0), SharedProfile("", ""), (), ())
        await store.federation.queue_for_peer("alice", SHARE, bytes(16), record.encode())
        queued = await store.federation.peer_items(10)
        assert await store.federation.claim_hand_over(b"another node", HAND_OVER_CLAIM)
        with pytest.raises(HandedOverElsewhere):
            await federation.hand_over_queue()
        assert await store.federation.peer_items(10) == queued
        await store.federation.release_hand_over(b"another node")
        with pytest.raises(PeerUnavailable):
            await federation.hand_over_queue()
        assert await store.federation.peer_items(10) == queued
        assert await store.federation.claim_hand_over(b"another node", HAND_OVER_CLAIM)


def test_the_shared_record_is_exactly_the_allow_list() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(SharedRecord)}
    assert fields == {"account": "SharedAccount", "profile": "SharedProfile",
                      "statuses": "tuple[SharedStatus, ...]",
                      "devices": "tuple[SharedDevice, ...]"}
    assert [f.name for f in dataclasses.fields(SharedAccount)] == ["private_account",
                                                                   "linked_ms"]
    assert [f.name for f in dataclasses.fields(SharedProfile)] == ["display_name", "about"]
    assert [f.name for f in dataclasses.fields(SharedStatus)] == ["text", "posted_ms"]
    assert [f.name for f in dataclasses.fields(SharedDevice)] == ["name", "last_seen_ms"]

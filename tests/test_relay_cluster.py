"""Several relay nodes on one Redis, as real processes: nothing lost, nothing twice, in order.

Three ``e2e-relay serve --store redis://...`` processes share one ``redis-server`` (its own
folder and port, ``appendonly yes``, ``appendfsync always``). Clients connect to random nodes;
the two that talk are kept on different nodes, so every message crosses from one node to
another through Redis. Each client resends a payload until the relay acknowledged it (the same
payload id) and reconnects, with backoff, to a node that is up. ``E2E_CLUSTER_MESSAGES`` sets how
many messages each way (200 in CI). The nodes share one blob folder (``--blob-dir``), so a file
uploaded through one node is downloaded through another; a group's routing copy and its fan-out
work from any node. Calls stay on the node where they started; their rings and ends reach the
other nodes, and a request for a call elsewhere is refused as such.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio

from client.core.connection import ConnectionLost, ServerError
from client.core.errors import ClientError
from client.private.received import Received
from client.private.session import PrivateClient, PrivateSession
from e2e_proto import call_api
from e2e_proto import relay_api as api
from e2e_proto.payload import Payload
from server.calls.registry import SfuGrant
from server.relay.backends import open_backend
from server.relay.config import RelayConfig
from server.relay.store import Enqueue, Outgoing
from storage.redis_server import LocalRedis
from tests.fault_support import RelayProcess, free_port, send_and_receive
from tests.relay_harness import drain, link, make_client, register, session_of, start_relay

MESSAGES = int(os.environ.get("E2E_CLUSTER_MESSAGES", "200"))
NODES = 3
DEADLINE = 180.0


class Cluster:
    """One ``redis-server`` and ``nodes`` relay processes on it, each on its own port, each
    given ``options``."""

    def __init__(self, folder: Path, nodes: int = NODES, options: Sequence[str] = ()) -> None:
        self.redis = LocalRedis(folder / "redis")
        self.blob_dir = folder / "blobs"  # one folder for every node, as a deployment shares
        self.options = ["--blob-dir", str(self.blob_dir), *options]
        self.ports = [free_port() for _ in range(nodes)]
        self.nodes: dict[int, RelayProcess] = {}
        for port in self.ports:
            self.start_node(port)

    def start_node(self, port: int) -> None:
        """Start (again) the node on ``port``."""
        self.nodes[port] = RelayProcess(self.redis.url(), port, self.options)

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on ``port``."""
        self.nodes.pop(port).kill()

    def up(self) -> list[int]:
        """The ports of the nodes that run."""
        return [port for port in self.ports if port in self.nodes]

    def close(self) -> None:
        """Kill everything."""
        for node in self.nodes.values():
            node.kill()
        self.redis.kill()

    def log_count(self, text: str) -> int:
        """How many lines of the running nodes' logs have ``text``."""
        return sum(text in line for node in self.nodes.values() for line in node.lines)

    async def wait_for_log(self, text: str, seen: int = 0) -> None:
        """Poll the running nodes' logs until more than ``seen`` lines have ``text`` (bounded)."""
        with trio.fail_after(30):
            while self.log_count(text) <= seen:
                await trio.sleep(0.02)  # polling other processes' logs


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    yield running
    running.close()


class Talker:
    """A client that keeps to one node and moves to another node that runs when its own is
    gone, never to the node its peer uses (so that its messages cross nodes)."""

    def __init__(self, name: str, client: PrivateClient, cluster: Cluster, rng: random.Random
                 ) -> None:
        self.name, self.client, self.cluster, self.rng = name, client, cluster, rng
        self.peer: Talker | None = None
        self.outbox: list[tuple[str, Payload]] = []
        self.inbox: list[Received] = []
        self.sent = 0
        self.milestones: dict[int, trio.Event] = {}
        self.sessions = 0
        self.first_port = client.port

    def session(self) -> AbstractAsyncContextManager[PrivateSession]:
        """A session on this talker's node, or on another one if that is down."""
        self.sessions += 1
        if self.client.port not in self.cluster.nodes:
            others = [p for p in self.cluster.up() if self.peer is None
                      or p != self.peer.client.port] or self.cluster.up()
            if others:
                self.client.port = self.rng.choice(others)
        return self.client.session()

    def reached(self, sent: int) -> trio.Event:
        """Set once ``sent`` payloads were acknowledged."""
        return self.milestones.setdefault(sent, trio.Event())

    def count_sent(self) -> None:
        self.sent += 1
        for count, event in self.milestones.items():
            if self.sent >= count:
                event.set()


async def _talkers(cluster: Cluster, tmp_path: Path, seed: int) -> tuple[Talker, Talker]:
    """alice and bob, registered on two different random nodes, each with its plan."""
    rng = random.Random(seed)
    first, second = rng.sample(cluster.ports, 2)
    alice = Talker("alice", make_client(tmp_path / "alice", first), cluster, rng)
    bob = Talker("bob", make_client(tmp_path / "bob", second), cluster, rng)
    alice.peer, bob.peer = bob, alice
    for talker in (alice, bob):
        await register(talker.client, talker.name)
        talker.outbox = [(talker.peer.name, Payload.new("text", i, text=f"{talker.name} {i}",
                                                         to=talker.peer.name))
                         for i in range(MESSAGES)]
    return alice, bob


async def _talk(alice: Talker, bob: Talker, faults: Callable[[], Awaitable[None]]) -> None:
    """Run both talkers and ``faults()`` until everything arrived; check it all."""
    done = trio.Event()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            for talker in (alice, bob):
                nursery.start_soon(send_and_receive, talker.session, talker.outbox,
                                   talker.inbox, done, talker.count_sent)
            await faults()
            while alice.outbox or bob.outbox or len(alice.inbox) < MESSAGES or len(
                    bob.inbox) < MESSAGES:
                await trio.sleep(0.05)  # polling for the end of the traffic
            done.set()
    for receiver, sender in ((alice, bob), (bob, alice)):
        assert [m.text for m in receiver.inbox if m.sender == sender.name] == [
            f"{sender.name} {i}" for i in range(MESSAGES)], receiver.name
        assert all(m.warning is None for m in receiver.inbox)


async def test_relay_node_sigkilled_clients_move_to_another(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    alice, bob = await _talkers(cluster, tmp_path, seed=17)

    async def faults() -> None:
        await alice.reached(MESSAGES // 3).wait()
        killed = alice.client.port
        cluster.kill_node(killed)  # alice moves to the third node
        await bob.reached(MESSAGES * 2 // 3).wait()
        cluster.start_node(killed)
        cluster.kill_node(bob.client.port)  # bob moves to the restarted node

    await _talk(alice, bob, faults)
    assert alice.client.port != bob.client.port
    assert alice.client.port != alice.first_port and bob.client.port != bob.first_port
    assert await drain(alice.client) == [] and await drain(bob.client) == []


async def test_redis_sigkilled_and_restarted_loses_nothing(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    alice, bob = await _talkers(cluster, tmp_path, seed=23)

    async def faults() -> None:
        for talker, share in ((alice, 1 / 3), (bob, 2 / 3)):
            await talker.reached(int(MESSAGES * share)).wait()
            refused = cluster.log_count("failed in storage")
            cluster.redis.kill()
            await cluster.wait_for_log("failed in storage", refused)  # a client noticed
            cluster.redis.start()  # the same folder: it loads its AOF

    await _talk(alice, bob, faults)
    assert alice.sessions + bob.sessions > 2  # requests failed, and their clients reconnected
    assert alice.client.port != bob.client.port
    assert await drain(alice.client) == [] and await drain(bob.client) == []


async def test_newer_connection_on_another_node_displaces_the_older(
        cluster: Cluster, tmp_path: Path) -> None:
    first_node, second_node, _ = cluster.ports
    alice = make_client(tmp_path / "alice", first_node)
    bob = make_client(tmp_path / "bob", first_node)  # sends through alice's old node
    await register(alice, "alice")
    await register(bob, "bob")
    async with alice.session() as first:
        alice.port = second_node
        async with alice.session() as second, alice.session() as same_node:
            with trio.fail_after(10):
                async for _ in first.connection.pushes:  # until the first node closes it
                    pass
            async with session_of(bob) as b:
                await b.send_text("alice", "to the newer connection")
            got: list[Received] = []
            with trio.fail_after(10):
                while not got:
                    await second.receive(got.append, wait=0.05)
            assert [m.text for m in got] == ["to the newer connection"]
            assert (await same_node.connection.request("ping"))["ok"] is True  # same node: kept
        with pytest.raises(ConnectionLost):
            await first.connection.request("ping")


async def test_link_unlink_and_notices_across_nodes(cluster: Cluster, tmp_path: Path) -> None:
    first_node, second_node, third_node = cluster.ports
    primary = make_client(tmp_path / "primary", first_node)
    phone = make_client(tmp_path / "phone", second_node)  # waits for approval on another node
    await register(primary, "alice")
    assert await link(primary, phone, "alice", "phone") == 1
    bob = make_client(tmp_path / "bob", third_node)
    await register(bob, "bob")
    async with session_of(bob) as b:
        await b.send_text("alice", "to both devices")
    assert [m.text for m in await drain(primary)] == ["to both devices"]
    assert [m.text for m in await drain(phone)] == ["to both devices"]
    async with phone.session() as on_second:
        async with primary.session() as p:
            await p.unlink(1)
        with trio.fail_after(10):
            frames = [frame async for frame in on_second.connection.pushes]
        assert any(f.get("code") == api.DEVICE_UNLINKED for f in frames)


async def test_a_group_message_and_files_cross_nodes(cluster: Cluster, tmp_path: Path) -> None:
    """alice, bob and carol each on their own node: a group's routing copy written through one
    node fans a message out to the others; a file uploaded through one node is downloaded
    through the others from the shared blob folder, and deleted once every recipient has it."""
    names = ("alice", "bob", "carol")
    clients = {name: make_client(tmp_path / name, port)
               for name, port in zip(names, cluster.ports, strict=True)}
    for name, client in clients.items():
        await register(client, name)
    photo, notes = tmp_path / "photo.bin", tmp_path / "notes.txt"
    photo.write_bytes(os.urandom(2 * 1024 * 1024 + 17))  # three upload chunks
    notes.write_bytes(b"for bob only\n" * 1000)
    async with session_of(clients["alice"]) as a:
        await a.group_create("friends", ["bob", "carol"])
        await a.group_send_text("friends", "hello from node one")
        await a.group_send_file("friends", photo, caption="the beach")
        await a.send_file("bob", notes)
    for name in ("bob", "carol"):
        got = [m for m in await drain(clients[name]) if m.warning is None]
        assert [(m.group, m.text) for m in got if m.group] == [
            ("friends", "[created the group with bob, carol]"),
            ("friends", "hello from node one"), ("friends", "the beach")]
        (shared,) = [m.file for m in got if m.group and m.file is not None]
        assert shared.path is not None and Path(shared.path).read_bytes() == photo.read_bytes()
        if name == "bob":
            (direct,) = [m.file for m in got if not m.group and m.file is not None]
            assert direct.path is not None
            assert Path(direct.path).read_bytes() == notes.read_bytes()
    async with session_of(clients["carol"]) as c:  # carol answers the group from node three
        await c.group_send_text("friends", "got it")
    for name in ("alice", "bob"):
        assert [m.text for m in await drain(clients[name]) if m.warning is None] == ["got it"]
    stored = [p for p in cluster.blob_dir.rglob("*") if p.is_file()]
    assert stored == []  # every recipient said it has both files: both were deleted


async def test_bundle_limits_count_a_requesters_fetches_through_every_node(
        cluster: Cluster, tmp_path: Path) -> None:
    """Three accounts each fetch bob's bundle alternately through two nodes (a session on one,
    then on the other): each is refused
    after as many as one node allows (a requester's budget per target device is one for all
    nodes), and bob's one-time prekeys are handed out up to one budget for all nodes."""
    first_node, second_node, _ = cluster.ports
    config = RelayConfig()
    await register(make_client(tmp_path / "bob", first_node), "bob")
    with_opk = 0
    for index in range(3):
        mallory = make_client(tmp_path / f"mallory{index}", first_node)
        await register(mallory, f"mallory{index}")
        fetched = 0
        with pytest.raises(ServerError) as caught:
            for mallory.port in itertools.cycle((first_node, second_node)):
                async with session_of(mallory) as m:  # one node at a time (no displacement)
                    answer = await m.connection.request("fetch_bundles", account="bob")
                with_opk += answer["bundles"][0][5] is not None
                fetched += 1
                assert fetched <= 2 * config.bundle_burst_per_target, "counted per node"
        assert fetched == config.bundle_burst_per_target
        assert caught.value.code == api.RATE_LIMITED and "bob.0" in str(caught.value)
        assert caught.value.details["retry_after"] == 3600 / config.bundles_per_target_per_hour
    assert with_opk == config.one_time_prekey_burst


async def test_registrations_from_one_address_are_counted_through_every_node(
        tmp_path: Path) -> None:
    """Registrations from one address through two nodes stop at ``--registrations-per-hour``
    for both together."""
    cluster = Cluster(tmp_path, nodes=2, options=["--registrations-per-hour", "3"])
    try:
        ports = itertools.cycle(cluster.ports)
        for index in range(3):
            await register(make_client(tmp_path / f"user{index}", next(ports)), f"user{index}")
        for port in cluster.ports:
            with pytest.raises(ClientError, match="from this address"):
                await register(make_client(tmp_path / f"more{port}", port), f"more{port}")
    finally:
        cluster.close()


async def test_expiry_from_several_nodes_deletes_each_message_once(redis_server: LocalRedis
                                                                   ) -> None:
    redis_server.flush()
    url = redis_server.url()
    async with open_backend(url) as (store, _):
        await store.create_account("bob", b"A" * 32, 1, b"list", b"S" * 64, {0: b"K" * 32}, 0.0)
        for i in range(2500):
            await store.enqueue(Enqueue([Outgoing("bob", 0, b"%d" % i)], ("alice", 0),
                                        float(i), 10_000, 2**30))
    counts: list[int] = []

    async def node() -> None:
        async with open_backend(url) as (store, _):
            counts.append(await store.expire(2000.0))

    async with trio.open_nursery() as nursery:
        for _ in range(NODES):
            nursery.start_soon(node)
    assert sum(counts) == 2000
    async with open_backend(url) as (store, _):
        left = await store.pending("bob", 0, 0, 10_000)
    assert [d.envelope for d in left] == [b"%d" % i for i in range(2000, 2500)]


async def test_redis_down_refuses_sends_and_keeps_what_it_acknowledged(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    redis = LocalRedis(tmp_path / "redis")
    try:
        relay = await start_relay(nursery, redis.url())
        alice = make_client(tmp_path / "alice", relay.port)
        bob = make_client(tmp_path / "bob", relay.port)
        await register(alice, "alice")
        await register(bob, "bob")
        async with session_of(alice) as a:
            await a.send_text("bob", "before the crash")
            redis.kill()
            with pytest.raises(ClientError, match="cannot store"):
                await a.send_text("bob", "while Redis is down")
        with pytest.raises(ClientError, match="cannot store or read"):
            async with session_of(bob):
                pass
        redis.start()
        assert [m.text for m in await drain(bob)] == ["before the crash"]
        async with session_of(alice) as a:
            await a.send_text("bob", "after the restart")
        assert [m.text for m in await drain(bob)] == ["after the restart"]
        assert await relay.store.pending("bob", 0, 0, 10) == []
        assert await relay.store.account("alice") is not None
    finally:
        redis.kill()


async def test_a_device_list_change_on_one_node_reaches_every_nodes_copy(
        nursery: trio.Nursery, redis_server: LocalRedis) -> None:
    redis_server.flush()
    first = await start_relay(nursery, redis_server.url())
    second = await start_relay(nursery, redis_server.url())
    await first.store.create_account("bob", b"A" * 32, 1, b"list-1", b"S" * 64, {0: b"K" * 32},
                                     0.0)
    with trio.fail_after(5):  # copies are kept once the node's hub hears the change channel
        while (copy := await second.store.account("bob")) is not await second.store.account(
                "bob"):
            await trio.sleep(0.01)  # polling: the hub subscribes in the background
    assert copy is not None and copy.list_version == 1
    await first.store.replace_device_list("bob", 2, b"list-2", b"S" * 64,
                                          {0: b"K" * 32, 1: b"L" * 32}, [], 1.0)
    with trio.fail_after(5):
        while (record := await second.store.account("bob")) is copy:
            await trio.sleep(0.01)  # polling: the change is announced through redis-server
    assert record is not None and record.list_version == 2
    assert record.list_body == b"list-2" and record.devices == {0: b"K" * 32}


async def test_calls_ring_across_nodes_and_stay_on_their_node(
        nursery: trio.Nursery, tmp_path: Path, redis_server: LocalRedis) -> None:
    """A call started on one node rings the callee's device on another node and ends there
    too; joining it through the other node is refused as a call elsewhere, through its own
    node it works."""
    redis_server.flush()
    grant = SfuGrant("127.0.0.1", 9, bytes(32))  # signalling only: no media is sent
    home = await start_relay(nursery, redis_server.url(), sfu=grant)
    other = await start_relay(nursery, redis_server.url(), sfu=grant)
    alice = make_client(tmp_path / "alice", home.port)
    bob = make_client(tmp_path / "bob", other.port)
    await register(alice, "alice")
    await register(bob, "bob")
    async with session_of(alice) as a, session_of(bob) as b:
        answer = await a.connection.request("call_start", to="bob")
        call_id = answer["call_id"]
        with trio.fail_after(10):
            ring = await _next_push(b, call_api.CALL_RING)
        assert ring["call_id"] == call_id and ring["from"] == ["alice", 0]
        with pytest.raises(ServerError) as caught:
            await b.connection.request("call_join", call_id=call_id)
        assert caught.value.code == call_api.UNKNOWN_CALL
        assert caught.value.details.get("elsewhere") is True
        with pytest.raises(ServerError) as caught:  # a call nobody runs: no such call
            await b.connection.request("call_join", call_id=bytes(16))
        assert "elsewhere" not in caught.value.details
        assert (await b.connection.request("call_list"))["calls"] == []  # this node's calls
        bob.port = home.port
        async with session_of(bob) as on_home:  # bob's newer connection, on the call's node
            joined = await on_home.connection.request("call_join", call_id=call_id)
            assert joined["participants"][-1][1:] == ["bob", 0]
        await a.connection.request("call_end", call_id=call_id)
    bob.port = other.port
    async with session_of(bob) as b, session_of(alice) as a:
        answer = await a.connection.request("call_start", to="bob")
        await a.connection.request("call_end", call_id=answer["call_id"])
        with trio.fail_after(10):
            await _next_push(b, call_api.CALL_ENDED, answer["call_id"])
        with trio.fail_after(10):
            while await other.server.hub.call_elsewhere(answer["call_id"]):
                await trio.sleep(0.01)  # polling: the record is removed by the home's errand


async def _next_push(session: PrivateSession, kind: str, call_id: bytes | None = None) -> dict:
    """The next push of ``kind`` (for ``call_id``, if given) on the session's connection; others
    are skipped (a notice of an earlier call may arrive late)."""
    async for frame in session.connection.pushes:
        if frame.get("type") == kind and call_id in (None, frame.get("call_id")):
            return frame
    raise AssertionError(f"the connection closed before a {kind} push")

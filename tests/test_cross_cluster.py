"""Cross-transport chats and an account link with the relay on Redis, as real processes.

One ``redis-server`` (its own folder and port, durable, its append-only file in plain commands
so that a look at the disk can find a text), two ``e2e-relay serve --store redis://...`` nodes
and one ``e2e-social serve``, joined by the server-to-server link: the social server talks to
node B's peer listener (node A's when node B is gone), alice is served by node A. So what bob
sends crosses from the social server to node B, into Redis, and reaches alice's live connection
on node A through the hub; what alice sends leaves from node A. Alice links her account on node
A and unlinks it on node B: the state is in Redis, either node hands the queue over, and after
the unlink the shared profile is gone from Redis's append-only file too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from client.core.cross_outbox import CrossPending
from client.private.received import Received
from client.social.session import SocialClient
from server.calls.keyfile import write_key_file
from storage.redis_server import LocalRedis
from tests import relay_harness, social_harness
from tests.fault_support import RelayProcess, ServerProcess, SocialProcess, free_port
from tests.federation_harness import opted_in

PROFILE_NAME = "Alice of the cluster"
DEADLINE = 30.0


class Servers:
    """Redis, relay nodes A and B on it, and the social server, linked with one key."""

    def __init__(self, folder: Path) -> None:
        self.redis = LocalRedis(folder / "redis", options=["--aof-use-rdb-preamble", "no"])
        key_file = folder / "peer.key"
        write_key_file(key_file)
        peer = ["--peer-key-file", str(key_file)]
        self.ports = {name: free_port() for name in ("a", "b", "social")}
        self.peers = peers = {name: free_port() for name in self.ports}
        self.processes: list[ServerProcess] = []
        try:
            for node in ("a", "b"):
                self.processes.append(RelayProcess(self.redis.url(), self.ports[node], [
                    "--blob-dir", str(folder / "blobs"),
                    "--peer-listen", f"127.0.0.1:{peers[node]}",
                    "--peer-social", f"127.0.0.1:{peers['social']}", *peer]))
            self.processes.append(SocialProcess(folder / "social.db", self.ports["social"], [
                "--peer-listen", f"127.0.0.1:{peers['social']}",
                "--peer-relay", f"127.0.0.1:{peers['b']}",
                "--peer-relay", f"127.0.0.1:{peers['a']}", *peer]))
        except BaseException:
            self.close()
            raise

    def kill_node(self, node: str) -> None:
        """SIGKILL relay node ``node`` ("a" or "b")."""
        self.processes["ab".index(node)].kill()

    async def social_linked_to(self, node: str) -> None:
        """Wait until the social server logged a link to node ``node``'s peer listener."""
        wanted = f"peer link to 127.0.0.1:{self.peers[node]} up"
        with trio.fail_after(DEADLINE):
            while not any(wanted in line for line in self.processes[2].lines):
                await trio.sleep(0.05)  # polling another process's log, bounded

    def close(self) -> None:
        """Kill everything."""
        for process in self.processes:
            process.kill()
        self.redis.kill()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    running = Servers(tmp_path)
    yield running
    running.close()


async def test_a_cross_chat_and_an_account_link_on_two_relay_nodes(servers: Servers,
                                                                   tmp_path: Path) -> None:
    alice, bob = await opted_in(tmp_path, servers.ports["a"], servers.ports["social"])
    async with relay_harness.session_of(alice) as a:
        await a.send_text("bob@social", "from node a")
    assert [e.text for e in await social_harness.drain(bob)] == ["from node a"]
    # bob's message goes to node B (the social server's peer), alice listens on node A.
    heard: list[Received] = []
    arrived = trio.Event()

    def keep(message: Received) -> None:
        heard.append(message)
        arrived.set()

    async with relay_harness.session_of(alice) as a, trio.open_nursery() as nursery:
        await a.receive(keep)  # what waits (nothing), so the next arrives live
        nursery.start_soon(a.receive, keep, float("inf"))
        async with social_harness.session_of(bob) as b:
            await b.send_text("alice@private", "to node a through node b")
        with trio.fail_after(DEADLINE):
            await arrived.wait()
        nursery.cancel_scope.cancel()
    assert [(m.sender, m.text) for m in heard] == [("bob@social", "to node a through node b")]

    # The link is made on node A, read and ended on node B.
    async with social_harness.session_of(bob):  # its device key is published
        pass
    async with relay_harness.session_of(alice) as a:
        await a.set_profile(PROFILE_NAME, "")
        assert bob.state.account is not None
        link_id = await a.link_account(bob.state.account, bob.state.device_id,
                                       bob.state.identity())
    alice.port = servers.ports["b"]
    async with relay_harness.session_of(alice) as a:
        with trio.fail_after(DEADLINE):  # handed over by whichever node holds the claim
            while len((report := await a.sharing_log()).entries) < 2:
                await trio.sleep(0.05)  # polling other processes' work, bounded
        assert report.linked is not None and report.linked[:2] == (link_id, "bob")
        assert [e.kind for e in report.entries] == ["linked", "shared"]
        record = await _linked_record(bob)
        assert record is not None and PROFILE_NAME.encode() in record
        assert PROFILE_NAME.encode() in servers.redis.append_only_bytes()  # a look finds it
        assert await a.unlink_account() == "bob"
    with trio.fail_after(DEADLINE):
        while await _linked_record(bob) is not None:
            await trio.sleep(0.05)  # polling another process's state, bounded
        while PROFILE_NAME.encode() in servers.redis.append_only_bytes():
            await trio.sleep(0.05)  # Redis rewrites its append-only file in the background
    async with relay_harness.session_of(alice) as a:
        after = await a.sharing_log()
    assert after.linked is None and all(e.record is None for e in after.entries)
    assert [e.kind for e in after.entries][-2:] == ["unlinked", "deleted"]


async def test_the_social_server_turns_to_the_next_relay_node_when_one_goes(
        servers: Servers, tmp_path: Path) -> None:
    """The social server names node B, then node A (``--peer-relay`` twice). With node B
    killed, a request that was on its way to B is refused ``unavailable`` (nothing is sent
    twice; the client keeps it for its next command) and the next goes through node A: bob's
    message reaches alice, once."""
    alice, bob = await opted_in(tmp_path, servers.ports["a"], servers.ports["social"])
    async with social_harness.session_of(bob) as b:
        await b.send_text("alice@private", "through node b")
    await servers.social_linked_to("b")  # the first it names
    servers.kill_node("b")
    async with social_harness.session_of(bob) as b:
        try:
            await b.send_text("alice@private", "through node a")
        except CrossPending:  # the link to node B broke under this one: kept, not lost
            assert await b.flush_cross()  # the next command sends it, through node A
    await servers.social_linked_to("a")
    texts = [m.text for m in await relay_harness.drain(alice)]
    assert texts == ["through node b", "through node a"]


async def _linked_record(bob: SocialClient) -> bytes | None:
    """The record the social server keeps for bob's live link (None without one)."""
    async with social_harness.session_of(bob) as b:
        answer = await b.request("linked")
    return answer["record"]

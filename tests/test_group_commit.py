"""Group commit rounds (server/relay/group_commit.py): who shares a round, and when a deferrable
call (an acknowledgement) waits for one instead of starting its own. Driven step by step: a
round runs until the test lets it come back, and ``wait_all_tasks_blocked`` marks each step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio
import trio.testing

from server.relay.group_commit import GroupCommit


class Rounds:
    """A group commit whose rounds record their items and come back when told to, and the
    results of its calls."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._release: list[trio.Event] = []
        self.commit: GroupCommit[str, str] = GroupCommit(self.run)
        self.results: dict[str, str] = {}

    async def call(self, item: str, deferrable: bool = False) -> None:
        """Run ``item`` through the group commit and keep its result."""
        self.results[item] = await self.commit.run(item, deferrable=deferrable)

    async def run(self, items: Sequence[str]) -> list[str]:
        self.batches.append(sorted(items))
        release = trio.Event()
        self._release.append(release)
        await release.wait()
        return [f"done {item}" for item in items]

    def release(self, index: int) -> None:
        """Let round ``index`` (0 first) come back."""
        self._release[index].set()

    def release_all(self) -> None:
        """Let every round come back (rounds are shielded: a failing test must not hang)."""
        for release in self._release:
            release.set()


async def _steps(rounds: Rounds, steps: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    """Run ``steps`` with a nursery for the calls; every round comes back at the end, also
    when a step fails (rounds are shielded: a failing test must fail, not hang)."""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            try:
                await steps(nursery)
            finally:
                rounds.release_all()


async def test_a_deferrable_call_joins_the_next_round_instead_of_starting_one() -> None:
    rounds = Rounds()

    async def steps(nursery: trio.Nursery) -> None:
        nursery.start_soon(rounds.call, "send 1")
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches == [["send 1"]]  # out, and held there
        nursery.start_soon(rounds.call, "ack 1", True)
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches == [["send 1"]]  # the ack started no round of its own
        nursery.start_soon(rounds.call, "send 2")
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches == [["send 1"], ["ack 1", "send 2"]]  # it joined this one

    await _steps(rounds, steps)
    assert rounds.results == {item: f"done {item}" for item in ("send 1", "ack 1", "send 2")}


async def test_a_deferrable_call_runs_its_own_round_once_none_is_out() -> None:
    rounds = Rounds()

    async def steps(nursery: trio.Nursery) -> None:
        nursery.start_soon(rounds.call, "send")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(rounds.call, "ack 1", True)
        nursery.start_soon(rounds.call, "ack 2", True)
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches == [["send"]]
        rounds.release(0)  # nothing else came: the waiting acks share one round
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches == [["send"], ["ack 1", "ack 2"]]
        rounds.release(1)
        nursery.start_soon(rounds.call, "ack 3", True)  # none out: at once
        await trio.testing.wait_all_tasks_blocked()
        assert rounds.batches[-1] == ["ack 3"]

    await _steps(rounds, steps)
    assert set(rounds.results) == {"send", "ack 1", "ack 2", "ack 3"}

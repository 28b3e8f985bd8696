"""Calls through e2e-chat's daemon as users run them: a relay (or social server) process with
its forwarding unit, a daemon process, bots on its socket and ``e2e-chat call`` processes.

A bot's call to a CLI user who answers (both sides see the other's frames; joined, left and
ended reach the bot), a ring reaching a subscribed bot (and a later subscriber) which joins by
id, the CLI's ``call`` through the daemon printing what the direct command prints, a social
group call a bot ends for everybody, and bad parameters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.call_harness import Logged
from tests.daemon_support import DaemonProcess, LineRpc, chat, wait_until
from tests.fault_support import RelayProcess, SocialProcess, free_port
from tests.social_harness import PASSWORD


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = RelayProcess(tmp_path / "relay.db", port, ["--sfu", f"127.0.0.1:{free_port()}"])
    yield port
    process.kill()


@pytest.fixture
def homes(relay: int, tmp_path: Path) -> tuple[Path, Path]:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert chat(relay, alice, "register", "alice").returncode == 0
    assert chat(relay, bob, "register", "bob").returncode == 0
    return alice, bob


@pytest.fixture
def bob_daemon(relay: int, homes: tuple[Path, Path]) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(homes[1], relay)
    yield daemon
    daemon.kill()


def calling(relay: int, home: Path, *args: str, env: dict[str, str] | None = None) -> Logged:
    """``e2e-chat --home HOME --relay ... ARGS`` running in the background."""
    return Logged("client.cli.main", "--home", str(home), "--relay", f"127.0.0.1:{relay}",
                  *args, env=env)


def _next(bot: LineRpc, name: str) -> dict[str, Any]:
    """The params of the next notification called ``name`` (others before it are skipped)."""
    while (note := bot.notification())["method"] != name:
        pass
    return note["params"]  # type: ignore[no-any-return]


def row(report: dict[str, Any], account: str) -> dict[str, Any]:
    """The report's one row: the participant ``account``."""
    [found] = report["participants"]
    assert found["account"] == account, report
    return found  # type: ignore[no-any-return]


def test_a_bot_calls_a_cli_user_who_answers(relay: int, homes: tuple[Path, Path],
                                            bob_daemon: DaemonProcess) -> None:
    alice, _ = homes
    bot = bob_daemon.connect()
    assert bot.events_until_caught_up() == []
    placed = bot.call("call_start", name="alice")
    call_id = placed["call_id"]
    assert placed["started"] and placed["end_to_end"] and not placed["video"]
    assert [p["account"] for p in placed["participants"]] == ["bob"]
    assert placed["seconds"] == 3600  # until call_leave, at most an hour
    assert [(c["call_id"], c["from"], c["joined"], c["running"]) for c in
            bot.call("call_list")["calls"]] == [(call_id, "bob", True, True)]
    assert bot.call("daemon_info")["transports"]["private"]["calls"] == 1

    answered = chat(relay, alice, "call", "--answer", "--seconds", "3", "--json")
    assert answered.returncode == 0, answered.stderr
    theirs = json.loads(answered.stdout)
    assert theirs["call_id"] == call_id and theirs["end_to_end"]
    assert row(theirs, "bob")["received"] > 20 and row(theirs, "bob")["failed"] == 0

    joined = _next(bot, "call_joined")
    assert (joined["call_id"], joined["account"], joined["transport"]) == (
        call_id, "alice", "private")
    assert "event_id" not in joined  # live, not queued
    left = _next(bot, "call_left")
    assert (left["account"], left["reason"]) == ("alice", "left")
    running = bot.call("call_stats", call_id=call_id)
    assert running["running"] and running["reason"] is None
    ours = row(running["report"], "alice")
    assert ours["received"] > 20 and ours["failed"] == 0 and ours["latency_p50_ms"] is not None

    outcome = bot.call("call_leave", call_id=call_id)
    assert (outcome["running"], outcome["reason"], outcome["error"]) == (False, "left", None)
    assert row(outcome["report"], "alice")["received"] >= ours["received"]
    assert outcome["report"]["sent"] > theirs["participants"][0]["received"]
    ended = _next(bot, "call_ended")
    assert (ended["call_id"], ended["reason"], ended["report"]) == (
        call_id, "left", outcome["report"])
    assert bot.call("call_stats", call_id=call_id) == outcome  # kept once over
    again = bot.request("call_leave", call_id=call_id)
    assert again["error"]["code"] == 1 and "not in call" in again["error"]["message"]
    assert bot.call("call_list") == {"calls": []}  # the call is over at the relay too


def test_a_ring_reaches_a_subscribed_bot_which_joins(relay: int, homes: tuple[Path, Path],
                                                     bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    bot = bob_daemon.connect()
    assert bot.events_until_caught_up() == []
    caller = calling(relay, alice, "call", "bob", "--seconds", "8", "--json")
    ring = _next(bot, "call_ring")
    assert (ring["from"], ring["kind"], ring["group"], ring["end_to_end"]) == (
        "alice", "call", None, True)
    assert ring["text"] == "[is calling you; answer: e2e-chat call --answer]"
    assert "event_id" not in ring  # a ring is live: never queued, never acknowledged
    late = bob_daemon.connect()
    [replayed] = late.events_until_caught_up()  # a new subscription hears what rings now
    assert (replayed["method"], replayed["params"]["call_id"]) == ("call_ring", ring["call_id"])
    shown = chat(relay, bob, "recv")  # the CLI through the daemon shows it as recv does
    assert (shown.returncode, shown.stdout) == (
        0, "alice: [is calling you; answer: e2e-chat call --answer]\n")
    [listed] = bot.call("call_list")["calls"]
    assert (listed["call_id"], listed["joined"], listed["running"]) == (
        ring["call_id"], False, False)

    joined = bot.call("call_join", call_id=ring["call_id"], seconds=2, video=True)
    assert not joined["started"] and joined["video"] and joined["seconds"] == 2
    assert sorted(p["account"] for p in joined["participants"]) == ["alice", "bob"]
    ended = _next(bot, "call_ended")
    assert (ended["call_id"], ended["reason"]) == (ring["call_id"], "left")
    assert row(ended["report"], "alice")["received"] > 20
    theirs = json.loads(caller.output())
    assert row(theirs, "bob")["received"] > 20 and row(theirs, "bob")["failed"] == 0


DESCRIBED = re.compile(r"call [0-9a-f]{8} on the private transport: end-to-end encrypted "
                       r"\(SFrame, AES_256_GCM_SHA512_128\); audio for 6 s; 1 in the call")
SENT = re.compile(r"sent \d+ frames in \d+\.\d s")


def test_the_cli_call_through_the_daemon_prints_what_it_prints_directly(
        relay: int, homes: tuple[Path, Path], bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    direct = chat(relay, alice, "call", "--answer")
    served = chat(relay, bob, "call", "--answer")
    assert (served.returncode, served.stdout, served.stderr) == (
        direct.returncode, direct.stdout, direct.stderr) == (
        1, "", "e2e-chat: no call is ringing for you\n")

    caller = calling(relay, bob, "call", "alice", "--seconds", "6")  # through the daemon
    wait_until(lambda: "is calling you" in chat(relay, alice, "recv").stdout, "the ring")
    answered = chat(relay, alice, "call", "--answer", "--seconds", "2", "--json")
    assert answered.returncode == 0, answered.stderr
    lines = caller.output().splitlines()
    assert DESCRIBED.fullmatch(lines[0]) and SENT.fullmatch(lines[1]), lines
    assert lines[2].split() == ["participant", "received", "lost", "failed", "no", "key",
                                "late", "dup", "p50", "ms", "p99", "ms"]
    cells = lines[3].split()
    assert cells[0] == "alice.0" and int(cells[1]) > 20 and int(cells[3]) == 0
    assert lines[4].startswith("notices: alice.0 joined")

    caller = calling(relay, alice, "call", "bob", "--seconds", "6", "--json")  # directly
    status = bob_daemon.connect()
    wait_until(lambda: status.call("call_list")["calls"] != [], "the ring")
    through = chat(relay, bob, "call", "--answer", "--seconds", "2", "--json")
    assert through.returncode == 0, through.stderr
    ours, theirs = json.loads(through.stdout), json.loads(caller.output())
    assert list(ours) == list(theirs)  # one JSON object of the same fields
    assert list(row(ours, "alice")) == list(row(theirs, "bob"))
    assert row(ours, "alice")["received"] > 20 and ours["seconds"] < 5  # 2, not 10


def test_a_bot_ends_a_social_group_call_for_everybody(tmp_path: Path) -> None:
    social_port = free_port()
    social = SocialProcess(tmp_path / "social-server.db", social_port,
                           ["--sfu", f"127.0.0.1:{free_port()}"])
    env = {**os.environ, "E2E_PASSWORD": PASSWORD, "E2E_SOCIAL": f"127.0.0.1:{social_port}"}
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    no_relay = free_port()  # these homes have a social account only

    def social_chat(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return chat(no_relay, home, "--transport", "social", *args, env=env)

    try:
        for home in (alice, bob):
            assert social_chat(home, "register", home.name).returncode == 0
        assert social_chat(bob, "group", "create", "pals", "alice").returncode == 0
        daemon = DaemonProcess(bob, no_relay, env=env)
        try:
            bot = daemon.connect()
            assert bot.events_until_caught_up() == []
            placed = bot.call("call_start", group="pals", transport="social")
            assert placed["started"] and not placed["end_to_end"]  # the server holds the keys
            member = calling(no_relay, alice, "--transport", "social", "call", "--group", "pals",
                             "--seconds", "30", "--json", env=env)
            joined = _next(bot, "call_joined")
            assert (joined["account"], joined["transport"]) == ("alice", "social")
            call = {"call_id": placed["call_id"], "transport": "social"}
            wait_until(lambda: row(bot.call("call_stats", **call)["report"], "alice")[
                "received"] > 100, "two seconds of frames from alice")
            outcome = bot.call("call_end", **call)
            assert (outcome["running"], outcome["reason"]) == (False, "ended")
            assert row(outcome["report"], "alice")["failed"] == 0
            assert _next(bot, "call_ended")["reason"] == "ended"
            theirs = json.loads(member.output())  # ended early for alice too
            assert theirs["seconds"] < 25 and row(theirs, "bob")["received"] > 50
        finally:
            daemon.kill()
    finally:
        social.kill()


def test_bad_call_params_are_invalid_params(bob_daemon: DaemonProcess) -> None:
    bot = bob_daemon.connect()
    call_id = "00" * 16
    for method, params in [
            ("call_start", {}), ("call_start", {"name": "alice", "group": "pals"}),
            ("call_start", {"name": "alice", "seconds": -1}),
            ("call_start", {"name": "alice", "seconds": "10"}),
            ("call_start", {"name": "alice", "seconds": 3601}),
            ("call_start", {"name": "alice", "video": 1}),
            ("call_join", {"call_id": "xyz"}), ("call_join", {"call_id": call_id + "00"}),
            ("call_leave", {}), ("call_end", {"call_id": 7}),
            ("call_stats", {"call_id": call_id, "wait": "yes"}),
            ("call_list", {"name": "alice"})]:
        answer = bot.request(method, **params)
        assert answer["error"]["code"] == -32602, (method, params, answer)
        assert answer["error"]["message"].startswith("invalid params: ")
    unknown = bot.request("call_stats", call_id=call_id)
    assert unknown["error"]["code"] == 1 and "no call 0000" in unknown["error"]["message"]
    assert bot.call("whoami")["account"] == "bob"  # and the daemon goes on serving

"""Calls as a user runs them: an ``e2e-sfu`` process, an ``e2e-relay`` (or ``e2e-social``)
process that names it, and ``e2e-chat call`` processes; the unit is killed and restarted
mid-call and both callers join it again. Waiting is bounded polling of the processes' output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.call_harness import Logged
from tests.fault_support import ROOT, free_port


def chat(home: Path, *args: str, server: list[str], timeout: float = 60.0
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli.main", "--home", str(home),
                           *server, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "E2E_PASSWORD": "password123"})


def rings(home: Path, server: list[str]) -> bool:
    """Whether ``recv --json`` shows a call ringing (one bounded poll)."""
    done = chat(home, "recv", "--json", server=server)
    return any(json.loads(line).get("kind") == "call" for line in done.stdout.splitlines())


def forwarded(line: str) -> int:
    """The unit's forwarded count in one of its ``stats {json}`` lines (0 for other lines)."""
    if " stats " not in line:
        return 0
    return int(json.loads(line.split(" stats ", 1)[1])["forwarded"])


def wait_until(check, what: str, attempts: int = 40) -> None:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.25)  # polling another process: bounded
    pytest.fail(f"{what} did not happen")


def test_a_call_between_two_terminals_survives_the_unit_restarting(tmp_path: Path) -> None:
    key_file = tmp_path / "sfu.key"
    made = subprocess.run([sys.executable, "-m", "server.calls.main", "keygen", str(key_file)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0 and len(key_file.read_text().strip()) == 64
    assert oct(key_file.stat().st_mode)[-3:] == "600"
    sfu_port, relay_port = free_port(), free_port()
    unit_args = ("server.calls.main", "serve", "--listen", f"127.0.0.1:{sfu_port}",
                 "--key-file", str(key_file), "--stats-interval", "0.25")
    unit = Logged(*unit_args)
    unit.wait_for("listening on")
    relay = Logged("server.relay.main", "serve", "--listen", f"127.0.0.1:{relay_port}",
                   "--db", str(tmp_path / "relay.db"), "--sfu-address",
                   f"127.0.0.1:{sfu_port}", "--sfu-key-file", str(key_file))
    relay.wait_for("listening on")
    server = ["--relay", f"127.0.0.1:{relay_port}"]
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    try:
        assert chat(alice, "register", "alice", server=server).returncode == 0
        assert chat(bob, "register", "bob", server=server).returncode == 0
        caller = Logged("client.cli.main", "--home", str(alice), *server, "call", "bob",
                        "--seconds", "7", "--json")
        wait_until(lambda: rings(bob, server), "the ring")
        callee = Logged("client.cli.main", "--home", str(bob), *server, "call", "--answer",
                        "--seconds", "4", "--json")
        unit.wait_for(lambda line: forwarded(line) > 40)  # both stream through it
        unit.kill()
        unit = Logged(*unit_args)  # restarted on the same port, knowing nobody
        unit.wait_for("listening on")
        unit.wait_for("(2 in it)")  # both joined it again
        got = {name: json.loads(process.output()) for name, process in
               (("alice", caller), ("bob", callee))}
    finally:
        unit.kill()
        relay.kill()
    for name, other in (("alice", "bob"), ("bob", "alice")):
        report = got[name]
        assert report["end_to_end"] and report["rejoins"] >= 1, report
        [row] = report["participants"]
        assert row["account"] == other and row["received"] > 20 and row["failed"] == 0


def test_a_social_group_call_from_the_command_line_is_labelled(tmp_path: Path) -> None:
    social_port, sfu_port = free_port(), free_port()
    social = Logged("server.social.main", "serve", "--listen", f"127.0.0.1:{social_port}",
                    "--db", str(tmp_path / "social.db"), "--sfu", f"127.0.0.1:{sfu_port}")
    social.wait_for("listening on")
    server = ["--transport", "social", "--social", f"127.0.0.1:{social_port}"]
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    try:
        for name, home in homes.items():
            assert chat(home, "register", name, server=server).returncode == 0
        assert chat(homes["alice"], "group", "create", "pals", "bob",
                    server=server).returncode == 0
        caller = Logged("client.cli.main", "--home", str(homes["alice"]), *server, "call",
                        "--group", "pals", "--seconds", "4",
                        env={**os.environ, "E2E_PASSWORD": "password123"})
        wait_until(lambda: rings(homes["bob"], server), "the ring")
        joined = chat(homes["bob"], "call", "--group", "pals", "--seconds", "1.5",
                      server=server)
        first = caller.output()
    finally:
        social.kill()
    assert joined.returncode == 0, joined.stderr
    assert "NOT end-to-end encrypted" in joined.stdout and "NOT end-to-end" in first
    row = next(line for line in joined.stdout.splitlines() if line.startswith("alice.0"))
    received, lost, failed = (int(cell) for cell in row.split()[1:4])
    assert received > 20 and failed == 0 and lost == 0

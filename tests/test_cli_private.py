"""The e2e-chat CLI as a user runs it: real processes against a relay process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fault_support import ROOT, RelayProcess, free_port


@pytest.fixture
def relay(tmp_path: Path):
    port = free_port()
    process = RelayProcess(tmp_path / "relay.db", port)
    yield port
    process.kill()


def chat(port: int, home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli.main", "--home", str(home), "--relay",
         f"127.0.0.1:{port}", *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
        timeout=60)


def test_register_chat_recv_json_verify(relay: int, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert chat(relay, alice, "register", "alice").returncode == 0
    assert chat(relay, bob, "register", "bob").returncode == 0
    session = chat(relay, alice, "chat", "bob", stdin="hello from chat\nsecond line\n/quit\n")
    assert session.returncode == 0, session.stderr
    got = chat(relay, bob, "recv", "--json")
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    assert [(m["from"], m["text"]) for m in lines] == [("alice", "hello from chat"),
                                                     ("alice", "second line")]
    assert all(len(m["id"]) == 32 and m["device"] == 0 and m["ts"] > 0 for m in lines)
    numbers = [chat(relay, home, "verify", other).stdout.splitlines()[-1]
               for home, other in ((alice, "bob"), (bob, "alice"))]
    assert numbers[0] == numbers[1] and len(numbers[0].split()) == 12
    assert chat(relay, alice, "whoami").stdout.strip() == "alice (device 0)"


@pytest.mark.parametrize("args,message", [
    (("send", "nobody", "x"), "unknown user 'nobody'"),
    (("pin", "00"), "not supported on the private transport"),
    (("history", "bob"), "not supported on the private transport"),
])
def test_user_errors_are_one_line(relay: int, tmp_path: Path, args: tuple[str, ...],
                                  message: str) -> None:
    home = tmp_path / "alice"
    chat(relay, home, "register", "alice")
    done = chat(relay, home, *args)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_not_registered_and_relay_down(tmp_path: Path) -> None:
    done = chat(free_port(), tmp_path / "nobody", "send", "bob", "x")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "cannot reach" in done.stderr or "not registered" in done.stderr
    bad = chat(free_port(), tmp_path / "x", "recv", "--wait", "-1")
    assert bad.returncode == 2 and "expected a number of seconds" in bad.stderr


def test_send_file_recv_json_and_fetch_file(relay: int, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    assert chat(relay, alice, "register", "alice").returncode == 0
    assert chat(relay, bob, "register", "bob").returncode == 0
    source = tmp_path / "minutes.txt"
    source.write_bytes(b"the minutes of the meeting\n" * 5000)
    sent = chat(relay, alice, "send-file", "bob", str(source), "--caption", "read this")
    assert sent.returncode == 0, sent.stderr
    assert "sent minutes.txt" in sent.stdout and "end-to-end encrypted" in sent.stdout
    got = chat(relay, bob, "recv", "--json")
    assert got.returncode == 0, got.stderr
    (line,) = [json.loads(text) for text in got.stdout.splitlines()]
    assert line["kind"] == "media" and line["text"] == "read this"
    assert line["path"] == str(bob / "files" / "minutes.txt")
    assert (line["size"], line["mime"]) == (source.stat().st_size, "text/plain")
    assert line["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert Path(line["path"]).read_bytes() == source.read_bytes()
    again = chat(relay, bob, "fetch-file", line["id"][:10])
    assert again.returncode == 0 and again.stdout.strip() == line["path"]
    missing = chat(relay, alice, "send-file", "bob", str(tmp_path / "nope.txt"))
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    help_text = chat(relay, alice, "--help").stdout
    assert "send-file" in help_text and "fetch-file" in help_text


def test_link_returns_at_once_after_the_approval(relay: int, tmp_path: Path) -> None:
    """Issue 11.1: `link` exits 0 right after the primary's proof, not when --wait runs out."""
    alice, laptop = tmp_path / "alice", tmp_path / "laptop"
    assert chat(relay, alice, "register", "alice").returncode == 0
    assert chat(relay, alice, "send", "alice", "note to self").returncode == 0
    link = subprocess.Popen(
        [sys.executable, "-m", "client.cli.main", "--home", str(laptop), "--relay",
         f"127.0.0.1:{relay}", "link", "alice", "--wait", "45", "--device-name", "laptop"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert link.stdout is not None
        first = link.stdout.readline()  # bounded: link exits (EOF) when its wait runs out
        assert first.startswith("link code: "), first
        code = first.split(": ", 1)[1].strip()
        approve = chat(relay, alice, "approve", code)
        assert approve.returncode == 0, approve.stderr
        approved_at = time.monotonic()
        out, err = link.communicate(timeout=40)
        took = time.monotonic() - approved_at
    finally:
        link.kill()
    assert link.returncode == 0, err
    assert "linked as alice device 1" in out
    assert took < 20, f"link took {took:.1f} s after the approval"
    assert chat(relay, laptop, "whoami").stdout.strip() == "alice (device 1)"

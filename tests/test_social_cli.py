"""The CLI on the social transport: ``e2e-chat --transport social ...`` against a real server.

``client.cli.main`` runs its own ``trio.run``, so the server runs in a thread with its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from client.cli import main
from server.social import SocialServer
from server.social_main import serve
from server.social_store import SqliteSocialStore
from tests.social_harness import FAST, PASSWORD


@pytest.fixture
def social_port(tmp_path: Path) -> Iterator[int]:
    """A social server on a free port, in a thread, for the duration of one test."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def run() -> None:
        store = SqliteSocialStore(tmp_path / "social.db")
        try:
            with trio.CancelScope() as scope:
                box["scope"], box["token"] = scope, trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(serve, SocialServer(store, FAST),
                                                    "127.0.0.1", 0)
                    box["port"] = listeners[0].socket.getsockname()[1]
                    ready.set()
        finally:
            store.close()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield int(box["port"])  # type: ignore[call-overload]
    trio.from_thread.run_sync(box["scope"].cancel,  # type: ignore[attr-defined]
                              trio_token=box["token"])
    thread.join(30)


def test_cli_social_commands(social_port: int, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    monkeypatch.setenv("E2E_SOCIAL", f"127.0.0.1:{social_port}")
    monkeypatch.delenv("E2E_TRANSPORT", raising=False)

    def run(home: str, *argv: str) -> tuple[int, str, str]:
        code = main(["--home", str(tmp_path / home), "--transport", "social", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("alice", "register", "alice")[:2] == (0, "registered alice (device 0)\n")
    assert run("bob", "register", "bob")[0] == 0
    code, out, _ = run("alice", "send", "bob", "hi bob, from the command line")
    assert code == 0
    sent = out.strip()
    code, out, _ = run("bob", "recv", "--json")
    assert code == 0
    (line,) = out.splitlines()
    received = json.loads(line)
    assert received["id"] == sent
    assert {k: received[k] for k in ("from", "device", "text", "conversation")} == {
        "from": "alice", "device": 0, "text": "hi bob, from the command line",
        "conversation": "alice"}
    assert isinstance(received["ts"], int)
    assert run("bob", "react", sent, "🎉")[:2] == (0, "")
    assert run("bob", "pin", sent)[0] == 0
    code, out, _ = run("alice", "history", "bob")
    assert code == 0
    assert out == f"[{sent}] alice: hi bob, from the command line (pinned) 🎉bob\n"
    code, out, _ = run("alice", "pins", "bob")
    assert out.startswith(f"[{sent}] alice: hi bob")
    code, out, _ = run("bob", "search", "command")
    assert code == 0 and out.startswith(f"[{sent}] (alice) alice: hi bob")
    code, out, _ = run("alice", "recv", "--json")
    assert [json.loads(x)["kind"] for x in out.splitlines()] == ["reaction", "pin"]

    code, out, err = run("bob", "react", sent, "not an emoji")
    assert (code, out) == (1, "")
    assert err.startswith("e2e-chat: ") and len(err.splitlines()) == 1
    assert "exactly one emoji" in err
    code, _, err = run("bob", "react", "seventeen", "👍")
    assert code == 1 and err.startswith("e2e-chat: invalid message id")
    code, _, err = run("bob", "history", "nobody")
    assert code == 1 and "unknown_conversation" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("E2E_PASSWORD", "wrong password")
    code, _, err = run("bob2", "login", "bob")
    assert code == 1 and "wrong account name or password" in err
    code, _, err = run("nobody", "send", "bob", "hi")
    assert code == 1 and err.startswith("e2e-chat: not logged in")
    assert "Traceback" not in err

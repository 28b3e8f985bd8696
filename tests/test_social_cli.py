"""The CLI on the social transport: ``e2e-chat --transport social ...`` against a real server.

``client.cli.main`` runs its own ``trio.run``, so the server runs in a thread with its own.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme

from client.cli import common as cli_common
from client.cli.main import main
from client.core.connection import ConnectionLost
from client.social.session import SocialSession
from server.social.main import serve
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore
from tests.social_harness import FAST, PASSWORD, make_client, register, start_social


@contextlib.contextmanager
def social_in_thread(tmp_path: Path, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A social server on a free port (TLS with ``tls``), in a thread; yields the port."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def run() -> None:
        store = SqliteSocialStore(tmp_path / "social.db")
        try:
            with trio.CancelScope() as scope:
                box["scope"], box["token"] = scope, trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    listeners = await nursery.start(serve, SocialServer(store, FAST),
                                                    "127.0.0.1", 0, tls)
                    box["port"] = listeners[0].transport_listener.socket.getsockname()[1] \
                        if tls is not None else listeners[0].socket.getsockname()[1]
                    ready.set()
        finally:
            store.close()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield int(box["port"])  # type: ignore[call-overload]
    finally:
        trio.from_thread.run_sync(box["scope"].cancel,  # type: ignore[attr-defined]
                                  trio_token=box["token"])
        thread.join(30)


@pytest.fixture
def social_port(tmp_path: Path) -> Iterator[int]:
    """A social server on a free port, in a thread, for the duration of one test."""
    with social_in_thread(tmp_path) as port:
        yield port


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


def test_cli_social_verify_shows_and_accepts_a_new_device(
        social_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    monkeypatch.setenv("E2E_SOCIAL", f"127.0.0.1:{social_port}")

    def run(home: str, *argv: str) -> tuple[int, str, str]:
        code = main(["--home", str(tmp_path / home), "--transport", "social", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("alice", "register", "alice")[0] == 0
    assert run("bob", "register", "bob")[0] == 0
    assert run("alice", "secret", "bob")[0] == 0
    assert run("alice", "send", "bob", "to bob's first device")[0] == 0
    assert run("bob-new", "login", "bob")[0] == 0
    code, _, err = run("alice", "send", "bob", "to every device of bob")
    assert code == 1 and "device 1 (new, key " in err and len(err.splitlines()) == 1
    code, out, _ = run("alice", "verify", "bob")
    assert code == 0 and [line.split()[-1] for line in out.splitlines()] == ["accepted", "new"]
    code, out, _ = run("alice", "verify", "bob", "--accept")
    assert code == 0 and out.splitlines()[-1] == "accepted the 2 device(s) of bob"
    assert run("alice", "send", "bob", "to every device of bob")[0] == 0
    code, out, _ = run("bob-new", "recv", "--json")
    assert [json.loads(x)["text"] for x in out.splitlines()
            if json.loads(x)["kind"] == "message"] == ["to every device of bob"]


def test_cli_social_honours_the_tls_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    monkeypatch.delenv("E2E_CA", raising=False)

    def run(home: str, *argv: str) -> tuple[int, str, str]:
        code = main(["--home", str(tmp_path / home), "--transport", "social", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    with social_in_thread(tmp_path, tls=context) as port:
        monkeypatch.setenv("E2E_SOCIAL", f"127.0.0.1:{port}")
        assert run("alice", "--ca", str(ca_file), "register", "alice")[:2] == (
            0, "registered alice (device 0)\n")
        code, _, err = run("bob", "--insecure", "register", "bob")
        assert code == 0 and "certificate is not checked" in err
        code, out, _ = run("alice", "--ca", str(ca_file), "send", "bob", "over TLS")
        assert code == 0 and out.strip().isdecimal()
        code, out, _ = run("bob", "--insecure", "recv", "--json")
        assert code == 0 and json.loads(out)["text"] == "over TLS"
        code, _, err = run("carol", "--tls", "register", "carol")  # not a system CA
        assert code == 1 and err.startswith("e2e-chat: ") and len(err.splitlines()) == 1
        code, _, err = run("carol", "--ca", str(tmp_path / "nope.pem"), "register", "carol")
        assert code == 1 and err.startswith("e2e-chat: cannot load the CA file")
        assert err.count("\n") == 1


async def test_reconnecting_catches_a_lost_connection_inside_a_group(
        nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    client = make_client(tmp_path / "alice", social.port)
    await register(client, "alice")
    calls: list[SocialSession] = []

    async def work(session: SocialSession) -> None:
        calls.append(session)
        if len(calls) == 1:  # as a nursery (chat's) raises it
            raise ExceptionGroup("chat", [ConnectionLost("the connection broke")])

    await cli_common.reconnecting(client.session, 30, work)
    assert len(calls) == 2
    assert "the connection broke; reconnecting in" in capsys.readouterr().err


def test_cli_social_devices_unlink_and_logout(social_port: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11.9: a login can be listed, revoked from another device, and logged out."""
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    monkeypatch.setenv("E2E_SOCIAL", f"127.0.0.1:{social_port}")

    def run(home: str, *argv: str) -> tuple[int, str, str]:
        code = main(["--home", str(tmp_path / home), "--transport", "social", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("phone", "register", "alice")[0] == 0
    assert run("laptop", "login", "alice")[0] == 0
    assert run("tablet", "login", "alice")[0] == 0
    code, out, _ = run("phone", "devices")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == ["0", "1", "2"]
    assert lines[0].endswith("(this device)") and "(this device)" not in lines[1]
    assert all("logged in" in line and "expires" in line for line in lines)
    # The phone revokes the laptop: the laptop's next command says so in one line.
    assert run("phone", "unlink", "1") == (0, "revoked device 1: its login no longer works\n",
                                           "")
    code, _, err = run("laptop", "send", "alice", "hi")
    assert code == 1 and err.count("\n") == 1 and "login alice" in err
    # The tablet logs out: its token is gone here and at the server.
    code, out, _ = run("tablet", "logout")
    assert code == 0 and out.startswith("logged out")
    code, _, err = run("tablet", "send", "alice", "hi")
    assert code == 1 and "not logged in" in err
    code, out, _ = run("phone", "devices")
    assert [line.split()[0] for line in out.splitlines()] == ["0"]
    assert run("tablet", "login", "alice")[0] == 0  # back, as a new device
    assert run("tablet", "whoami")[1].strip() == "alice (device 3)"


def test_logout_is_for_the_social_transport(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--home", str(tmp_path / "private"), "logout"])
    assert code == 1 and "social transport" in capsys.readouterr().err

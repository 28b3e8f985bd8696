"""The command line between the transports, against real relay and social server processes
joined by the server-to-server link: the README's walk-through."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.cli.main import main
from server.relay.main import main as relay_main
from tests.fault_support import linked_servers
from tests.social_harness import PASSWORD

Chat = Callable[..., tuple[int, str, str]]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    key = tmp_path / "peer.key"
    assert relay_main(["peer-keygen", str(key)]) == 0
    assert relay_main(["peer-keygen", str(key)]) == 1  # never over an existing key
    with linked_servers(tmp_path, key) as ports:
        yield ports


@pytest.fixture
def chat(tmp_path: Path, servers: tuple[int, int], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> Chat:
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    relay_port, social_port = servers

    def run(home: str, *args: str, social: bool = False) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--home", str(tmp_path / home), "--relay", f"127.0.0.1:{relay_port}",
                     "--social", f"127.0.0.1:{social_port}",
                     *(["--transport", "social"] if social else []), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_walk_through(chat: Chat, tmp_path: Path) -> None:
    assert chat("alice", "register", "alice")[0] == 0
    assert chat("bob", "register", "bob", social=True)[0] == 0
    code, out, err = chat("alice", "send", "bob@social", "too early")
    assert code == 1 and "cross-transport chats are off for this account" in err
    code, out, _ = chat("alice", "cross", "on")
    assert code == 0 and "reach you as alice@private" in out
    code, out, err = chat("alice", "send", "bob@social", "hello bob")
    assert code == 1 and "bob@social does not take cross-transport chats" in err
    code, out, _ = chat("bob", "cross", "on", social=True)
    assert code == 0 and "reach you as bob@social" in out
    assert chat("alice", "send", "bob@social", "hello bob") == (0, "", "")
    code, out, _ = chat("bob", "recv", "--json", social=True)
    event = json.loads(out)
    assert (event["conversation"], event["from"], event["text"], event["secret"]) == (
        "alice@private", "alice@private", "hello bob", True)
    assert chat("bob", "send", "alice@private", "hello alice", social=True)[0] == 0
    assert chat("alice", "recv") == (0, "bob@social: hello alice\n", "")
    result = chat("alice", "verify", "bob@social")
    assert result[0] == 0, result
    alice_number = chat("alice", "verify", "bob@social")[1].splitlines()[1]
    result = chat("bob", "verify", "alice@private", social=True)
    assert result[0] == 0, result
    bob_number = result[1].splitlines()[1]
    assert alice_number == bob_number and len(alice_number.replace(" ", "")) == 60
    # Profiles and status updates, on each transport.
    code, out, _ = chat("alice", "profile", "set", "--name", "Alice", "--about", "curious")
    assert code == 0 and out.startswith("alice: Alice\n  about: curious")
    assert chat("alice", "status", "post", "down the rabbit hole")[0] == 0
    assert "alice: down the rabbit hole" in chat("alice", "status", "list")[1]
    assert chat("bob", "profile", "set", "--name", "Bob", social=True)[0] == 0
    assert chat("bob", "profile", "show", "bob", social=True)[1] == "bob: Bob\n"
    # The account link: both sign, only the allow-list is shared, the log says what and when.
    code, out, _ = chat("alice", "link-account", "--social-home", str(tmp_path / "bob"))
    assert code == 0 and "linked alice@private to bob@social" in out
    code, out, _ = chat("bob", "linked", social=True)
    assert code == 0 and "linked to alice@private" in out
    assert "display name: 'Alice'" in out and "down the rabbit hole" in out
    assert "hello" not in out  # no message ever crosses
    code, out, _ = chat("alice", "sharing")
    assert "linked to bob@social" in out and "shared" in out and "'curious'" in out
    code, out, _ = chat("alice", "unlink-account")
    assert code == 0 and "unlinked from bob@social" in out
    assert chat("bob", "linked", social=True)[1] == "not linked to a private account\n"
    code, out, _ = chat("alice", "sharing")
    assert "not linked" in out and "unlinked" in out and "deleted" in out
    assert "'curious'" not in out  # the relay forgot the contents too
    code, _, err = chat("bob", "sharing", social=True)
    assert code == 1 and "runs on the private transport" in err

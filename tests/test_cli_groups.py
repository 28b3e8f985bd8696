"""``e2e-chat group ...`` as a user runs it: real processes against a relay process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli_private import chat, relay  # noqa: F401  (the relay fixture)


def test_group_commands(relay: int, tmp_path: Path) -> None:  # noqa: F811
    homes = {name: tmp_path / name for name in ("alice", "bob", "carol")}
    for name, home in homes.items():
        assert chat(relay, home, "register", name).returncode == 0
    created = chat(relay, homes["alice"], "group", "create", "friends", "bob", "carol")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created group 'friends' with 3 members"
    assert chat(relay, homes["alice"], "group", "send", "friends", "hello all").returncode == 0
    got = chat(relay, homes["bob"], "recv")
    assert got.stdout.splitlines() == ["[friends] alice: [created the group with bob, carol]",
                                       "[friends] alice: hello all"]
    members = chat(relay, homes["bob"], "group", "members", "friends")
    assert members.stdout.splitlines() == ["alice (admin)", "bob", "carol"]
    refused = chat(relay, homes["bob"], "group", "remove", "friends", "carol")
    assert refused.returncode == 1 and "only an admin" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    session = chat(relay, homes["bob"], "chat", "--group", "friends",
                   stdin="from bob's chat\n/quit\n")
    assert session.returncode == 0, session.stderr
    lines = [json.loads(line) for line in chat(relay, homes["carol"], "recv",
                                               "--json").stdout.splitlines()]
    assert [(m["group"], m["from"], m["text"]) for m in lines][-2:] == [
        ("friends", "alice", "hello all"), ("friends", "bob", "from bob's chat")]
    assert chat(relay, homes["alice"], "group", "remove", "friends", "carol").returncode == 0
    gone = chat(relay, homes["carol"], "group", "send", "friends", "still here?")
    assert gone.returncode == 1 and "no group named 'friends'" in gone.stderr
    assert chat(relay, homes["alice"], "group", "rename", "friends", "pals").returncode == 0
    assert chat(relay, homes["bob"], "recv").stdout.splitlines()[-2:] == [
        "[friends] alice: [removed carol]", "[pals] alice: [renamed the group to 'pals']"]
    assert chat(relay, homes["bob"], "chat").returncode == 2  # a name or --group is needed


def test_group_send_file(relay: int, tmp_path: Path) -> None:  # noqa: F811
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    for name, home in homes.items():
        assert chat(relay, home, "register", name).returncode == 0
    assert chat(relay, homes["alice"], "group", "create", "pair", "bob").returncode == 0
    source = tmp_path / "notes.txt"
    source.write_text("group notes\n" * 128)
    sent = chat(relay, homes["alice"], "group", "send-file", "pair", str(source),
                "--caption", "for both")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == ("sent notes.txt (1.5 KiB) to the group 'pair', end-to-end "
                                   "encrypted")
    lines = chat(relay, homes["bob"], "recv").stdout.splitlines()
    saved = homes["bob"] / "files" / "notes.txt"
    assert lines[-1] == f"[pair] alice: [file notes.txt, 1.5 KiB, text/plain] {saved} for both"
    assert saved.read_text() == source.read_text()

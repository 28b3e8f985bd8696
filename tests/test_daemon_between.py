"""The daemon's methods between the transports (profiles, status updates, the account link,
cross-transport chats), against a relay and a social server joined by their link: each method
over JSON-RPC, the commands through a running daemon printing what they print without one, bad
parameters refused without a change, link-account when the daemon does not hold both accounts,
and a private command's warnings printed alike."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from client.cli.main import main
from server.calls.keyfile import write_key_file
from tests.daemon_support import DaemonProcess, LineRpc, chat
from tests.fault_support import linked_servers
from tests.relay_harness import register_under_a_new_key, relay_with_alice_and_bob, session_of
from tests.social_harness import PASSWORD

Run = Callable[..., tuple[int, str, str]]
SOCIAL = ("--transport", "social")


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[tuple[int, int]]:
    key = tmp_path / "peer.key"
    write_key_file(key)
    with linked_servers(tmp_path, key) as both:
        yield both


@pytest.fixture
def cli(ports: tuple[int, int], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    """``e2e-chat --home HOME ARGS`` in this process: its exit code, stdout and stderr."""
    monkeypatch.setenv("E2E_PASSWORD", PASSWORD)
    servers = ["--relay", f"127.0.0.1:{ports[0]}", "--social", f"127.0.0.1:{ports[1]}"]

    def run(home: Path, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--home", str(home), *servers, *args])
        return (code, *capsys.readouterr())

    return run


def _daemon(home: Path, ports: tuple[int, int]) -> DaemonProcess:
    return DaemonProcess(home, ports[0], env={**os.environ, "E2E_PASSWORD": PASSWORD,
                                              "E2E_SOCIAL": f"127.0.0.1:{ports[1]}"})


def _account(cli: Run, home: Path, name: str, private: bool = True,
             social: bool = True) -> Path:
    """``home`` with ``name`` registered on the transports asked for."""
    if private:
        assert cli(home, "register", name)[0] == 0
    if social:
        assert cli(home, *SOCIAL, "register", name)[0] == 0
    return home


def _olive(cli: Run, tmp_path: Path) -> Path:
    """olive, on both transports, taking cross-transport chats on both."""
    olive = _account(cli, tmp_path / "olive", "olive")
    assert cli(olive, "cross", "on")[0] == 0
    assert cli(olive, *SOCIAL, "cross", "on")[0] == 0
    return olive


def _commands(home: Path, picture: Path) -> list[tuple[str, ...]]:
    return [
        ("profile", "show"), ("profile", "set", "--name", "Someone", "--about", "about me"),
        ("profile", "set", "--avatar", str(picture)), ("profile", "show"),
        ("profile", "set", "--name", "x" * 65), ("status", "post", "out for lunch"),
        ("status", "list"), ("status", "post", "x" * 701), ("sharing",), ("cross", "status"),
        ("cross", "on"), ("cross", "approve", "1", "0" * 16), ("cross", "remove", "1"),
        ("linked",), ("unlink-account",), ("send", "olive@social", "hello olive"),
        (*SOCIAL, "profile", "set", "--name", "Someone S", "--about", "social me"),
        (*SOCIAL, "profile", "set", "--avatar", str(picture)), (*SOCIAL, "profile", "show"),
        (*SOCIAL, "profile", "show", "olive"), (*SOCIAL, "profile", "set", "--about", "x" * 501),
        (*SOCIAL, "status", "post", "on social"), (*SOCIAL, "status", "list"),
        (*SOCIAL, "linked"), (*SOCIAL, "cross", "status"), (*SOCIAL, "cross", "on"),
        (*SOCIAL, "cross", "status"), (*SOCIAL, "cross", "approve", "5", "0" * 16),
        (*SOCIAL, "cross", "remove", "0"), (*SOCIAL, "send", "olive@private", "hello"),
        (*SOCIAL, "sharing"), (*SOCIAL, "link-account", "--social-home", str(home)),
        ("link-account", "--social-home", str(home)), (*SOCIAL, "linked"), ("sharing",),
        ("unlink-account",), (*SOCIAL, "linked"), ("cross", "off"), (*SOCIAL, "cross", "off")]


def _shown(done: tuple[int, str, str], swap: tuple[str, str]) -> tuple[int, str, str]:
    """A command's outcome with times (minutes) and message ids as placeholders, and one name
    swapped for another."""
    def plain(text: str) -> str:
        text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "TIME", text.replace(*swap))
        return re.sub(r"(?m)^\d+$", "ID", text)

    return done[0], plain(done[1]), plain(done[2])


def test_commands_between_the_transports_print_the_same_through_the_daemon(
        cli: Run, ports: tuple[int, int], tmp_path: Path) -> None:
    _olive(cli, tmp_path)
    picture = tmp_path / "me.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    dana = _account(cli, tmp_path / "dana", "dana")
    direct = [_shown(cli(dana, *command), ("dana", "sam"))
              for command in _commands(dana, picture)]
    sam = _account(cli, tmp_path / "sam", "sam")
    daemon = _daemon(sam, ports)
    try:
        served = [_shown(cli(sam, *command), ("sam", "sam"))
                  for command in _commands(sam, picture)]
        bot = daemon.connect()
        assert bot.call("daemon_info")["transports"].keys() == {"private", "social"}
    finally:
        daemon.kill()
    for command, one, other in zip(_commands(sam, picture), direct, served, strict=True):
        assert one == other, command
    commands = _commands(sam, picture)
    assert [code for code, _, _ in served].count(1) == 12  # each refusal is one line
    assert all(err.count("\n") == 1 for code, _, err in served if code)
    linking = commands.index(("link-account", "--social-home", str(sam)))
    assert served[linking][1].startswith("linked sam@private to sam@social (both signed).")
    assert "  display name: 'Someone'" in served[linking + 1][1]  # social: linked
    assert served[3][1] == f"sam: Someone\n  about: about me\n  avatar: {picture}\n"
    outcomes = dict(zip(commands, served, strict=True))  # the last of each command
    assert "devices taking part: 0" in outcomes[(*SOCIAL, "cross", "status")][1]


def _error(client: LineRpc, method: str, **params: Any) -> dict[str, Any]:
    answer = client.request(method, **params)
    assert "error" in answer, (method, answer)
    assert "\n" not in answer["error"]["message"]
    return answer["error"]  # type: ignore[no-any-return]


def test_each_method_between_the_transports_over_json_rpc(
        cli: Run, ports: tuple[int, int], tmp_path: Path) -> None:
    olive = _olive(cli, tmp_path)
    sam = _account(cli, tmp_path / "sam", "sam")
    daemon = _daemon(sam, ports)
    try:
        bot = daemon.connect()
        _profiles_and_statuses(bot)
        _cross_and_the_link(bot, cli, sam, olive)
    finally:
        daemon.kill()


def _profiles_and_statuses(bot: LineRpc) -> None:
    assert _error(bot, "profile_show")["code"] == 1  # none set yet
    assert bot.call("profile_set", name="Sam", about="bot") == {
        "account": "sam", "name": "Sam", "about": "bot", "avatar": None, "end_to_end": True,
        "notices": []}
    assert bot.call("profile_set", about="a bot") | {"notices": []} == bot.call("profile_show")
    assert bot.call("profile_show")["name"] == "Sam"  # what is not given stays
    social = bot.call("profile_set", name="Sam S", transport="social")
    assert social == {"account": "sam", "name": "Sam S", "about": "", "avatar": None,
                      "end_to_end": False}
    assert bot.call("profile_show", name="olive", transport="social")["account"] == "olive"
    posted = bot.call("status_post", text="working")
    assert posted["notices"] == [] and posted["posted_ms"] > 0
    assert bot.call("status_list")["statuses"] == [
        {"account": "sam", "text": "working", "posted_ms": posted["posted_ms"]}]
    on_social = bot.call("status_post", text="on social", transport="social")["posted_ms"]
    assert bot.call("status_list", transport="social")["statuses"] == [
        {"account": "sam", "text": "on social", "posted_ms": on_social}]
    # Bad parameters: the documented code, and nothing changes.
    before = (bot.call("profile_show"), bot.call("status_list"),
              bot.call("profile_show", transport="social"))
    for method, params in [("profile_set", {"name": 5}), ("profile_set", {"avatar": "me.png"}),
                           ("profile_set", {"nick": "x"}), ("profile_show", {"name": ""}),
                           ("status_post", {}), ("status_post", {"text": ["x"]}),
                           ("status_list", {"transport": "x"}),
                           ("cross_approve", {"device_id": "1", "key": "0" * 16}),
                           ("cross_remove", {"device_id": True}),
                           ("link_account", {"social_home": "sam"})]:
        assert _error(bot, method, **params)["code"] == -32602, (method, params)
    too_long = _error(bot, "profile_set", name="x" * 65)
    assert too_long["code"] == 1 and "64" in too_long["message"]
    assert _error(bot, "status_post", text="x" * 701)["code"] == 1
    assert _error(bot, "profile_set", about="x" * 501, transport="social")["code"] == 1
    assert (bot.call("profile_show"), bot.call("status_list"),
            bot.call("profile_show", transport="social")) == before


def _cross_and_the_link(bot: LineRpc, cli: Run, sam: Path, olive: Path) -> None:
    assert bot.call("cross_status") == {"account": "sam", "enabled": False, "notices": []}
    assert bot.call("cross_on") == {"account": "sam", "enabled": True, "notices": []}
    assert bot.call("cross_status")["enabled"]
    made = bot.call("cross_on", transport="social")
    assert (made["enabled"], made["outcome"], made["devices"]) == (True, "made", [0])
    assert len(bytes.fromhex(made["device_key"])) == 32
    assert bot.call("cross_status", transport="social") == {
        "account": "sam", "enabled": True, "devices": [0], "joins": []}
    for method, params, line in [
            ("cross_approve", {"device_id": 1, "key": "0" * 16}, "'cross approve' is for the "
             "social transport"),
            ("linked", {}, "'linked' is for the social transport"),
            ("sharing", {"transport": "social"}, "'sharing' runs on the private transport"),
            ("cross_approve", {"device_id": 5, "key": "0" * 16, "transport": "social"},
             "device 5 has not asked to join"),
            ("cross_remove", {"device_id": 0, "transport": "social"}, "is not listed")]:
        refused = _error(bot, method, **params)
        assert refused["code"] == 1 and line in refused["message"], (method, refused)
    # Chats with the other transport: sends and the safety number, each way.
    bot.call("subscribe")
    assert bot.call("send", name="olive@social", text="to social")["id"]
    assert cli(olive, *SOCIAL, "recv")[1].endswith(": to social\n")
    on_social = bot.call("send", name="olive@private", text="to private", transport="social")
    echo = _next_sent(bot, on_social["id"])
    assert (echo["conversation"], echo["secret"]) == ("olive@private", True)
    assert cli(olive, "recv")[1] == "sam@social: to private\n"
    number = bot.call("verify", name="olive@private", transport="social")
    assert (number["key_changed"], number["released"]) == (False, None)
    seen_by_olive = cli(olive, "verify", "sam@social")[1].splitlines()[1]
    assert number["safety_number"] == seen_by_olive
    assert cli(sam, *SOCIAL, "verify", "olive@private") == (  # client mode prints it so too
        0, f"safety number with olive@private:\n{seen_by_olive}\n", "")
    # The account link, with both of the home's accounts the daemon holds.
    assert bot.call("sharing")["linked"] is None
    linked = bot.call("link_account")
    assert (linked["account"], linked["social_account"]) == ("sam", "sam")
    assert linked["sharing"]["linked"]["account"] == "sam"
    shown = bot.call("linked", transport="social")["linked"]
    assert (shown["account"], shown["record"]["display_name"]) == ("sam", "Sam")
    assert shown["record"]["statuses"][0]["text"] == "working"
    log = bot.call("sharing")
    assert log["cross"] and log["linked"]["link_id"] == linked["sharing"]["linked"]["link_id"]
    assert "linked" in [entry["kind"] for entry in log["entries"]]
    assert bot.call("unlink_account") == {"social_account": "sam", "notices": []}
    assert bot.call("linked", transport="social") == {"linked": None}
    assert bot.call("cross_off") == {"account": "sam", "enabled": False, "notices": []}
    assert bot.call("cross_off", transport="social") == {"account": "sam", "enabled": False}


def _next_sent(bot: LineRpc, message_id: str) -> dict[str, Any]:
    while (note := bot.notification())["method"] != "sent" or (
            note["params"]["id"] != message_id):
        pass
    return note["params"]  # type: ignore[no-any-return]


def test_link_account_needs_both_accounts_in_one_process(
        cli: Run, ports: tuple[int, int], tmp_path: Path) -> None:
    pat = _account(cli, tmp_path / "pat", "pat", social=False)
    quinn = _account(cli, tmp_path / "quinn", "quinn", private=False)
    daemon = _daemon(pat, ports)
    try:
        none = cli(pat, "link-account", "--social-home", str(pat))
        assert none[:2] == (1, "")
        assert "the daemon serving" in none[2] and "has none" in none[2]
        other = cli(pat, "link-account", "--social-home", str(quinn))
        assert other[:2] == (1, "")
        assert f"not with the one in {quinn}: stop the daemon" in other[2]
        assert _error(daemon.connect(), "link_account")["code"] == 1
        assert cli(pat, "sharing")[1].startswith("not linked to a social account\n")
    finally:
        daemon.kill()
    daemon = _daemon(quinn, ports)  # now the social login's home is the daemon's
    try:
        held = cli(pat, "link-account", "--social-home", str(quinn))
        assert held == (1, "", f"e2e-chat: a daemon serves {quinn}, which holds the social "
                        "login: stop it first, or link through a daemon serving both accounts "
                        "in one home\n")
    finally:
        daemon.kill()
    done = cli(pat, "link-account", "--social-home", str(quinn))
    assert done[0] == 0 and "linked pat@private to quinn@social" in done[1]


async def test_a_private_commands_warnings_print_the_same_through_the_daemon(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as session:
        await session.send_text("bob", "hi")  # bob is a contact: status updates go to it
    await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    async with session_of(alice) as session:
        await session.device_list("bob", refresh=True)  # the new key: held until accepted
    alice.state.close()
    home = tmp_path / "alice"
    post = partial(chat, relay.port, home, "status", "post", "new phone")
    direct = await trio.to_thread.run_sync(post)
    daemon = await trio.to_thread.run_sync(DaemonProcess, home, relay.port)
    try:
        served = await trio.to_thread.run_sync(post)
    finally:
        daemon.kill()
    assert direct.stderr == ("warning: not sent to bob: the account key of 'bob' changed: check "
                             "the safety number with 'e2e-chat verify bob', then accept it with "
                             "'e2e-chat verify bob --accept'\n")
    assert (served.returncode, served.stdout, served.stderr) == (0, "", direct.stderr)

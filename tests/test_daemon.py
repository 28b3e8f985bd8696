"""e2e-chat's daemon as users run it: a relay process, daemon processes, bots on the socket.

No loss (a bot killed before its ack, 500 messages with no bot), the CLI through a running
daemon (same output, shows up as sent), and bad clients (each a clear error or a bounded
cutoff while the daemon keeps serving a good one).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from client.private.session import PrivateClient
from client.private.state import ClientState
from tests.daemon_support import TIMEOUT, DaemonProcess, LineRpc, chat, wait_until
from tests.fault_support import ROOT, RelayProcess, free_port


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    process = RelayProcess(tmp_path / "relay.db", port)
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
    daemon = DaemonProcess(homes[1], relay, "--write-timeout", "1")
    yield daemon
    daemon.kill()


NO_ACK_BOT = """
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"subscribe"}\\n')
for line in sock.makefile("rb"):
    print(line.decode().strip(), flush=True)
"""


def test_a_bot_killed_before_its_ack_gets_the_message_again_once(
        relay: int, homes: tuple[Path, Path], bob_daemon: DaemonProcess) -> None:
    alice, _ = homes
    assert chat(relay, alice, "send", "bob", "are you there?").returncode == 0
    bot = subprocess.Popen([sys.executable, "-c", NO_ACK_BOT, str(bob_daemon.socket)],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)
    seen = None
    assert bot.stdout is not None
    for line in bot.stdout:  # bounded: the daemon sends the queued message, then caught_up
        message = json.loads(line)
        if message.get("method") == "message":
            seen = message["params"]
            break
    bot.kill()  # between receiving and acknowledging
    bot.wait(TIMEOUT)
    assert seen is not None and seen["text"] == "are you there?" and seen["from"] == "alice"

    again = bob_daemon.connect()
    events = again.events_until_caught_up()
    assert [(e["method"], e["params"]["event_id"], e["params"]["text"]) for e in events] == [
        ("message", seen["event_id"], "are you there?")]
    assert again.call("ack", ids=[seen["event_id"]]) == {"acked": [seen["event_id"]]}
    assert again.call("ack", ids=[seen["event_id"]]) == {"acked": []}
    later = bob_daemon.connect()
    assert later.events_until_caught_up() == []  # acknowledged: gone for every subscriber


async def _send_many(home: Path, port: int, texts: list[str]) -> None:
    state = ClientState(home)
    try:
        async with PrivateClient(state, "127.0.0.1", port).session() as session:
            for text in texts:
                await session.send_text("bob", text)
    finally:
        state.close()


def test_500_messages_sent_while_no_bot_is_connected_all_arrive(
        relay: int, homes: tuple[Path, Path], bob_daemon: DaemonProcess) -> None:
    alice, _ = homes
    texts = [f"message {i}" for i in range(500)]
    trio.run(_send_many, alice, relay, texts)
    status = bob_daemon.connect()
    wait_until(lambda: status.call("daemon_info")["queued"] >= 500, "500 queued events")
    bot = bob_daemon.connect()
    bot.call("subscribe")
    got: list[dict[str, object]] = []
    while len(got) < 500:
        note = bot.notification()
        if note["method"] == "message":
            got.append(note["params"])
            if len(got) % 50 == 0:  # the subscription window is 100: acks move it
                bot.call("ack", ids=[int(e["event_id"]) for e in got[-50:]])  # type: ignore
    assert sorted(e["text"] for e in got) == sorted(texts)  # type: ignore[type-var]
    assert len({e["event_id"] for e in got}) == 500
    assert status.call("daemon_info")["queued"] == 0


def test_cli_send_through_the_daemon_shows_up_as_sent(
        relay: int, homes: tuple[Path, Path], bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    bot = bob_daemon.connect()
    assert bot.events_until_caught_up() == []
    done = chat(relay, bob, "send", "alice", "from the command line")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    sent = bot.notification()
    assert sent["method"] == "sent"
    assert (sent["params"]["to"], sent["params"]["text"]) == ("alice", "from the command line")
    assert "event_id" not in sent["params"]  # this daemon's own send: live, not queued
    got = chat(relay, alice, "recv")
    assert got.stdout == "bob: from the command line\n"
    # recv through the daemon prints what recv prints directly, and consumes it.
    assert chat(relay, alice, "send", "bob", "hello").returncode == 0
    wait_until(lambda: bot.notification()["method"] == "message", "the message event")
    through = chat(relay, bob, "recv")
    assert (through.returncode, through.stdout) == (0, "alice: hello\n")
    assert chat(relay, bob, "recv").stdout == ""


def test_commands_print_the_same_with_and_without_the_daemon(
        relay: int, homes: tuple[Path, Path]) -> None:
    alice, bob = homes
    assert chat(relay, alice, "send", "bob", "hi").returncode == 0
    assert chat(relay, bob, "recv").returncode == 0
    commands = [("whoami",), ("verify", "alice"), ("verify", "alice", "--accept"),
                ("send", "nobody", "x"), ("pin", "00"), ("history", "alice"),
                ("secret", "alice"), ("react", "ffff", "👍"), ("unlink", "3")]
    direct = [chat(relay, bob, *command) for command in commands]
    daemon = DaemonProcess(bob, relay)
    try:
        served = [chat(relay, bob, *command) for command in commands]
    finally:
        daemon.kill()
    for command, one, other in zip(commands, direct, served, strict=True):
        assert (one.returncode, one.stdout, one.stderr) == (
            other.returncode, other.stdout, other.stderr), command


def test_a_second_daemon_on_the_home_is_refused(
        relay: int, homes: tuple[Path, Path], bob_daemon: DaemonProcess) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "client.cli.main", "--home", str(homes[1]), "--relay",
         f"127.0.0.1:{relay}", "daemon"], cwd=ROOT, capture_output=True, text=True,
        timeout=TIMEOUT)
    assert second.returncode == 1
    assert f"a daemon (pid {bob_daemon.process.pid}) already serves" in second.stderr
    assert second.stderr.count("\n") == 1
    assert bob_daemon.connect().call("whoami") == {"account": "bob", "device": 0}


def test_a_crashed_daemon_leaves_nothing_in_the_way(
        relay: int, homes: tuple[Path, Path]) -> None:
    first = DaemonProcess(homes[1], relay)
    first.kill()  # SIGKILL: its locks go with it, its socket file stays
    assert (homes[1] / "daemon.sock").exists()
    direct = chat(relay, homes[1], "whoami")
    assert direct.stdout == "bob (device 0)\n"
    second = DaemonProcess(homes[1], relay)
    try:
        assert second.connect().call("whoami") == {"account": "bob", "device": 0}
    finally:
        second.kill()


@pytest.mark.parametrize("line,code", [
    (b"{not json\n", -32700),
    (b"[]\n", -32600),
    (b'{"jsonrpc":"1.0","id":1,"method":"whoami"}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"no_such_method"}\n', -32601),
    (b'{"jsonrpc":"2.0","id":1,"method":"send","params":{"name":"alice","text":7}}\n', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"send","params":{"name":"alice"}}\n', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"send","params":["alice","x"]}\n', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"ack","params":{"ids":[0]}}\n', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":{"transport":"x"}}\n', -32602),
])
def test_bad_requests_get_the_spec_errors(bob_daemon: DaemonProcess, line: bytes,
                                          code: int) -> None:
    client = bob_daemon.connect()
    client.send_line(line)
    answer = client.read_message()
    assert isinstance(answer, dict) and answer["error"]["code"] == code
    assert "\n" not in answer["error"]["message"]
    assert client.call("whoami") == {"account": "bob", "device": 0}  # the connection stays


def test_a_notification_is_never_answered(bob_daemon: DaemonProcess) -> None:
    client = bob_daemon.connect()
    client.send_line(b'{"jsonrpc":"2.0","method":"no_such_method"}\n'
                     b'{"jsonrpc":"2.0","method":"whoami"}\n')
    assert client.request("whoami")["id"] == 1  # the first answer on the line is this one


def test_a_10_mb_line_is_cut_off_and_others_are_served(bob_daemon: DaemonProcess) -> None:
    good = bob_daemon.connect()
    bad = bob_daemon.connect()
    sender = threading.Thread(target=_send_quietly, args=(bad.sock, b"x" * (10 << 20)))
    sender.start()
    answer = bad.read_message()
    assert isinstance(answer, dict) and answer["error"]["code"] == -32000
    assert "longer than" in answer["error"]["message"]
    assert bad.read_message() is None  # and the connection is closed
    sender.join(TIMEOUT)
    assert good.call("whoami")["account"] == "bob"


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the daemon closed the connection: expected


def test_a_client_that_never_reads_is_cut_off_and_others_are_served(
        bob_daemon: DaemonProcess) -> None:
    good = bob_daemon.connect()
    stuck = bob_daemon.connect()
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b'{"jsonrpc":"2.0","id":1,"method":"daemon_info"}\n' * 100
    cut = False
    for _ in range(10_000):  # bounded: the daemon must hang up well before this
        try:
            stuck.sock.sendall(request)
        except OSError:
            cut = True
            break
        assert good.call("whoami")["account"] == "bob"
    assert cut
    wait_until(lambda: any("cut off" in line for line in bob_daemon.lines), "the cutoff log")
    wait_until(lambda: good.call("daemon_info")["clients"] == 1, "the stuck client gone")


def test_a_flood_is_rate_limited_per_client(bob_daemon: DaemonProcess) -> None:
    flood = bob_daemon.connect()
    good = bob_daemon.connect()
    flood.send_line(b"".join(b'{"jsonrpc":"2.0","id":%d,"method":"whoami"}\n' % i
                             for i in range(1000)))
    codes = []
    for _ in range(1000):
        answer = flood.read_message()
        assert isinstance(answer, dict)
        codes.append(answer.get("error", {}).get("code"))
    assert codes.count(-32001) > 0 and codes.count(None) >= 400
    assert good.call("whoami")["account"] == "bob"


def test_tcp_needs_the_token(relay: int, homes: tuple[Path, Path]) -> None:
    port = free_port()
    daemon = DaemonProcess(homes[1], relay, "--tcp", f"127.0.0.1:{port}")
    try:
        token = (homes[1] / "daemon.token").read_text().strip()
        assert (homes[1] / "daemon.token").stat().st_mode & 0o777 == 0o600
        client = LineRpc(socket.create_connection(("127.0.0.1", port)))
        assert client.request("whoami")["error"]["code"] == -32002
        assert client.request("auth", token="wrong")["error"]["code"] == -32002
        assert client.call("auth", token=token) == {}
        assert client.call("whoami") == {"account": "bob", "device": 0}
    finally:
        daemon.kill()


@pytest.mark.parametrize("option", ["--tcp", "--http"])
def test_tcp_and_http_are_served_only_on_loopback(relay: int, homes: tuple[Path, Path],
                                                  option: str) -> None:
    # Neither has TLS: the bearer token and every message would cross the network in the clear.
    refused = subprocess.run(
        [sys.executable, "-m", "client.cli.main", "--home", str(homes[1]), "--relay",
         f"127.0.0.1:{relay}", "daemon", option, f"0.0.0.0:{free_port()}"], cwd=ROOT,
        capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode == 1
    assert refused.stderr == (f"e2e-chat: the daemon serves 0.0.0.0 only with TLS: it has none, "
                              f"so bind {option} to 127.0.0.1 (a TLS proxy there can serve "
                              "other machines)\n")
    assert not (homes[1] / "daemon.token").exists()


def test_port_0_serves_on_any_free_port_and_logs_it(relay: int,
                                                   homes: tuple[Path, Path]) -> None:
    daemon = DaemonProcess(homes[1], relay, "--tcp", "127.0.0.1:0")
    try:
        (port,) = (int(line.rsplit(":", 1)[1]) for line in daemon.lines
                   if "listening on tcp 127.0.0.1:" in line)
        client = LineRpc(socket.create_connection(("127.0.0.1", port)))
        assert client.call("auth", token=(homes[1] / "daemon.token").read_text().strip()) == {}
        assert client.call("whoami") == {"account": "bob", "device": 0}
    finally:
        daemon.kill()


def test_http_rpc_and_server_sent_events(relay: int, homes: tuple[Path, Path]) -> None:
    import http.client

    alice, bob = homes
    port = free_port()
    daemon = DaemonProcess(bob, relay, "--http", f"127.0.0.1:{port}")
    try:
        token = (bob / "daemon.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        web = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        web.request("POST", "/rpc", b'{"jsonrpc":"2.0","id":1,"method":"whoami"}')
        refused = web.getresponse()
        assert refused.status == 401 and json.loads(refused.read())["error"]["code"] == -32002
        web.request("POST", "/rpc", b'[{"jsonrpc":"2.0","id":1,"method":"whoami"},'
                    b'{"jsonrpc":"2.0","method":"whoami"}]', auth)
        answered = web.getresponse()
        assert json.loads(answered.read()) == [
            {"jsonrpc": "2.0", "id": 1, "result": {"account": "bob", "device": 0}}]
        assert chat(relay, alice, "send", "bob", "over http").returncode == 0
        events = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        events.request("GET", "/events", headers=auth)
        stream = events.getresponse()
        assert stream.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        while fields.get("event") != "message":  # caught_up may come first
            block = b""
            while b"\n\n" not in block:
                block += stream.readline()
            fields = dict(line.split(": ", 1) for line in block.decode().strip().split("\n"))
        assert json.loads(fields["data"])["text"] == "over http"
        web.request("POST", "/rpc", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ack",
                                                "params": {"ids": [int(fields["id"])]}}), auth)
        assert json.loads(web.getresponse().read())["result"] == {"acked": [int(fields["id"])]}
    finally:
        daemon.kill()


def test_echo_bot_answers(relay: int, homes: tuple[Path, Path],
                          bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    bot = subprocess.Popen([sys.executable, "examples/echo_bot.py", "--home", str(bob)],
                           cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert bot.stderr is not None and "answering" in bot.stderr.readline()
        assert chat(relay, alice, "send", "bob", "echo this").returncode == 0
        lines: list[str] = []
        wait_until(lambda: lines.extend(chat(relay, alice, "recv").stdout.splitlines())
                   or "bob: echo this" in lines, "the echo")
        assert chat(relay, alice, "group", "create", "team", "bob").returncode == 0
        assert chat(relay, alice, "group", "send", "team", "echo in the team").returncode == 0
        wait_until(lambda: lines.extend(chat(relay, alice, "recv").stdout.splitlines())
                   or "[team] bob: echo in the team" in lines, "the echo in the group")
    finally:
        bot.kill()
        bot.wait(TIMEOUT)


def test_a_full_queue_leaves_new_messages_on_the_relay_until_acks_make_room(
        relay: int, homes: tuple[Path, Path]) -> None:
    alice, bob = homes
    daemon = DaemonProcess(bob, relay, "--max-queued", "5")
    try:
        texts = [f"m{i}" for i in range(12)]
        trio.run(_send_many, alice, relay, texts)
        status = daemon.connect()
        wait_until(lambda: status.call("daemon_info")["transports"]["private"]["paused"],
                   "the daemon pausing on a full queue")
        assert status.call("daemon_info")["queued"] == 5
        bot = daemon.connect()
        bot.call("subscribe")
        got: list[str] = []
        while len(got) < 12:  # each ack makes room; the rest comes from the relay
            note = bot.notification()
            if note["method"] == "message":
                got.append(note["params"]["text"])
                bot.call("ack", ids=[note["params"]["event_id"]])
        assert sorted(got) == sorted(texts)
    finally:
        daemon.kill()


def test_chat_through_the_daemon(relay: int, homes: tuple[Path, Path],
                                 bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    done = chat(relay, bob, "chat", "alice", stdin="typed in chat\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chatting with alice;")
    assert chat(relay, alice, "recv").stdout == "bob: typed in chat\n"


def test_both_transports_at_once(relay: int, homes: tuple[Path, Path]) -> None:
    import os

    from tests.fault_support import SocialProcess
    from tests.social_harness import PASSWORD

    alice, bob = homes
    social_port = free_port()
    social = SocialProcess(alice.parent / "social-server.db", social_port)
    env = {**os.environ, "E2E_PASSWORD": PASSWORD, "E2E_SOCIAL": f"127.0.0.1:{social_port}"}

    def social_chat(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return chat(relay, home, "--transport", "social", *args, env=env)

    try:
        assert social_chat(alice, "register", "alice").returncode == 0
        assert social_chat(bob, "register", "bob").returncode == 0
        daemon = DaemonProcess(bob, relay, env=env)
        try:
            bot = daemon.connect()
            assert bot.call("daemon_info")["transports"].keys() == {"private", "social"}
            assert bot.events_until_caught_up() == []
            assert social_chat(alice, "send", "bob", "on social").returncode == 0
            assert chat(relay, alice, "send", "bob", "on private").returncode == 0
            got = {}
            while len(got) < 2:
                note = bot.notification()
                if note["method"] == "message":
                    got[note["params"]["transport"]] = note["params"]["text"]
            assert got == {"social": "on social", "private": "on private"}
            sent = social_chat(bob, "send", "alice", "reply on social")
            assert sent.returncode == 0 and sent.stdout.strip().isdigit()
            lines = social_chat(bob, "history", "alice").stdout.splitlines()
            assert lines[-2].endswith("] alice: on social")
            assert lines[-1] == f"[{sent.stdout.strip()}] bob: reply on social"
            assert bot.call("whoami", transport="social") == {"account": "bob", "device": 0}
        finally:
            daemon.kill()
    finally:
        social.kill()


def _next(bot: LineRpc, name: str) -> dict[str, Any]:
    """The params of the next notification called ``name`` (others before it are skipped)."""
    while (note := bot.notification())["method"] != name:
        pass
    return note["params"]  # type: ignore[no-any-return]


def test_a_group_through_the_daemon(relay: int, homes: tuple[Path, Path],
                                    bob_daemon: DaemonProcess) -> None:
    alice, bob = homes
    bot = bob_daemon.connect()
    assert bot.events_until_caught_up() == []
    assert chat(relay, alice, "group", "create", "team", "bob").returncode == 0
    update = _next(bot, "group_update")
    assert (update["group"], update["from"], update["kind"]) == ("team", "alice", "group_update")
    assert chat(relay, alice, "group", "send", "team", "hello team").returncode == 0
    message = _next(bot, "message")
    assert (message["group"], message["from"], message["text"], message["to"]) == (
        "team", "alice", "hello team", None)
    assert bot.call("ack", ids=[update["event_id"], message["event_id"]]) == {
        "acked": [update["event_id"], message["event_id"]]}
    assert bot.call("group_members", name="team")["members"] == ["alice", "bob"]
    sent = bot.call("group_send", name="team", text="hi from the bot")
    echo = _next(bot, "sent")
    assert (echo["id"], echo["group"], echo["text"]) == (sent["id"], "team", "hi from the bot")
    assert "event_id" not in echo
    assert chat(relay, alice, "recv").stdout == "[team] bob: hi from the bot\n"
    refused = bot.request("group_remove", name="team", member="alice")
    assert refused["error"]["code"] == 1 and "admin" in refused["error"]["message"]
    done = chat(relay, bob, "chat", "--group", "team", stdin="typed in the group\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chatting with team;")
    assert chat(relay, alice, "recv").stdout == "[team] bob: typed in the group\n"
    unknown = chat(relay, bob, "chat", "--group", "nosuch", stdin="/quit\n")
    assert (unknown.returncode, unknown.stderr) == (
        1, "e2e-chat: you are in no group named 'nosuch'\n")


def test_a_file_through_the_daemon(relay: int, homes: tuple[Path, Path],
                                   bob_daemon: DaemonProcess, tmp_path: Path) -> None:
    alice, bob = homes
    bot = bob_daemon.connect()
    assert bot.events_until_caught_up() == []
    report = tmp_path / "report.txt"
    report.write_text("quarterly figures\n")
    done = chat(relay, alice, "send-file", "bob", str(report), "--caption", "the report")
    assert done.returncode == 0, done.stderr
    got = _next(bot, "message")
    saved = Path(got["path"])
    assert saved.parent == bob / "files" and saved.read_bytes() == report.read_bytes()
    assert (got["kind"], got["size"], got["mime"], got["name"], got["caption"]) == (
        "media", report.stat().st_size, "text/plain", "report.txt", "the report")
    assert got["sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert bot.call("fetch_file", message_id=got["id"])["path"] == got["path"]

    photo = tmp_path / "photo.bin"
    photo.write_bytes(bytes(range(256)) * 300)
    relative = bot.request("send_file", name="alice", path="photo.bin")
    assert relative["error"]["code"] == -32602  # the daemon's directory is not the bot's
    sent = bot.call("send_file", name="alice", path=str(photo), mime="application/x-test")
    assert (sent["size"], sent["sha256"]) == (photo.stat().st_size,
                                              hashlib.sha256(photo.read_bytes()).hexdigest())
    assert _next(bot, "sent")["id"] == sent["id"]
    shown = chat(relay, alice, "recv", "--json")
    record = json.loads(shown.stdout)
    assert (record["from"], record["mime"], record["sha256"]) == (
        "bob", "application/x-test", sent["sha256"])
    assert Path(record["path"]).read_bytes() == photo.read_bytes()


def _same(direct: subprocess.CompletedProcess[str], served: subprocess.CompletedProcess[str],
          swap: dict[str, str]) -> None:
    """``served`` printed what ``direct`` printed, its names swapped by ``swap``."""
    def named(text: str) -> str:
        for old, new in swap.items():
            text = text.replace(old, new)
        return text

    assert (served.returncode, served.stdout, served.stderr) == (
        direct.returncode, named(direct.stdout), named(direct.stderr)), served.args


def _group_commands(group: str, file: Path) -> list[tuple[str, ...]]:
    renamed = f"{group}-new"
    return [("group", "create", group, "alice"), ("group", "add", group, "carol"),
            ("group", "members", group), ("group", "admin", group, "alice"),
            ("group", "members", group), ("group", "admin", group, "alice", "--revoke"),
            ("group", "send", group, "hi all"), ("group", "send-file", group, str(file)),
            ("group", "rename", group, renamed), ("group", "remove", renamed, "carol"),
            ("group", "members", renamed), ("group", "leave", renamed),
            ("group", "members", renamed), ("group", "add", "nosuch", "carol"),
            ("send-file", "alice", str(file), "--caption", "see this"),
            ("send-file", "alice", str(file.parent / "missing.txt")),
            ("fetch-file", "ffff")]


def test_group_and_file_commands_print_the_same_with_and_without_the_daemon(
        relay: int, homes: tuple[Path, Path], tmp_path: Path) -> None:
    alice, bob = homes
    assert chat(relay, tmp_path / "carol", "register", "carol").returncode == 0
    file = tmp_path / "notes.txt"
    file.write_text("five\n")

    def incoming(group: str, name: str) -> None:  # alice's group, message and file for bob
        attachment = tmp_path / name
        attachment.write_text("five\n")
        for command in (("group", "create", group, "bob"), ("group", "send", group, "hello"),
                        ("send-file", "bob", str(attachment))):
            assert chat(relay, alice, *command).returncode == 0

    direct = [chat(relay, bob, *command) for command in _group_commands("team-d", file)]
    incoming("club-d", "from-d.txt")
    direct_recv = chat(relay, bob, "recv")
    assert direct_recv.stdout.count("\n") == 3, direct_recv.stdout
    daemon = DaemonProcess(bob, relay)
    try:
        served = [chat(relay, bob, *command) for command in _group_commands("team-s", file)]
        incoming("club-s", "from-s.txt")
        status = daemon.connect()
        wait_until(lambda: status.call("daemon_info")["queued"] >= 3, "alice's three events")
        queued = status.events_until_caught_up()  # seen, not acknowledged: recv prints them
        file_id = next(e["params"]["id"] for e in queued if "mime" in e["params"])
        served_recv = chat(relay, bob, "recv")
        fetched = chat(relay, bob, "fetch-file", file_id[:12])
    finally:
        daemon.kill()
    swap = {"team-d": "team-s", "club-d": "club-s", "from-d.txt": "from-s.txt"}
    for one, other in zip(direct, served, strict=True):
        _same(one, other, swap)
    _same(direct_recv, served_recv, swap)
    assert "[club-s] alice: hello\n" in served_recv.stdout
    assert f"alice: [file from-s.txt, 5 B, text/plain] {bob / 'files' / 'from-s.txt'}" in (
        served_recv.stdout)
    assert (fetched.returncode, fetched.stdout) == (0, f"{bob / 'files' / 'from-s.txt'}\n")


def _social_group_commands(group: str, file: Path) -> list[tuple[str, ...]]:
    renamed = f"{group}-new"
    return [("group", "create", group, "alice"), ("group", "add", group, "carol"),
            ("group", "members", group), ("group", "admin", group, "alice"),
            ("group", "send", group, "hi all"), ("group", "rename", group, renamed),
            ("group", "remove", renamed, "carol"), ("group", "members", renamed),
            ("group", "send-file", renamed, str(file)), ("group", "leave", renamed),
            ("group", "members", renamed), ("send-file", "alice", str(file)),
            ("fetch-file", "999999")]


def test_social_group_and_file_commands_print_the_same_with_and_without_the_daemon(
        relay: int, homes: tuple[Path, Path], tmp_path: Path) -> None:
    import os
    import re

    from tests.fault_support import SocialProcess
    from tests.social_harness import PASSWORD

    alice, bob = homes
    social_port = free_port()
    social = SocialProcess(tmp_path / "social-server.db", social_port)
    env = {**os.environ, "E2E_PASSWORD": PASSWORD, "E2E_SOCIAL": f"127.0.0.1:{social_port}"}

    def social_chat(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return chat(relay, home, "--transport", "social", *args, env=env)

    def unnumbered(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        """Message ids (the server's counter) as ID."""
        for name in ("stdout", "stderr"):
            text = re.sub(r"(?m)^\d+$", "ID", getattr(done, name))
            setattr(done, name, re.sub(r"\[\d+\]", "[ID]", text))
        return done

    file = tmp_path / "notes.txt"
    file.write_text("five\n")
    try:
        for home, name in ((alice, "alice"), (bob, "bob"), (tmp_path / "carol", "carol")):
            assert social_chat(home, "register", name).returncode == 0
        direct = [unnumbered(social_chat(bob, *command))
                  for command in _social_group_commands("team-d", file)]
        assert social_chat(alice, "send-file", "bob", str(file)).returncode == 0
        direct_recv = unnumbered(social_chat(bob, "recv"))
        daemon = DaemonProcess(bob, relay, env=env)
        try:
            served = [unnumbered(social_chat(bob, *command))
                      for command in _social_group_commands("team-s", file)]
            bot = daemon.connect()
            bot.call("subscribe")
            assert social_chat(alice, "send-file", "bob", str(file)).returncode == 0
            got = _next(bot, "message")  # seen, not acknowledged: recv prints it
            served_recv = unnumbered(social_chat(bob, "recv"))
            fetched = social_chat(bob, "fetch-file", got["id"])
        finally:
            daemon.kill()
    finally:
        social.kill()
    for one, other in zip(direct, served, strict=True):
        _same(one, other, {"team-d": "team-s"})
    assert [one.returncode for one in direct].count(1) == 3  # admin, members, fetch-file
    _same(direct_recv, served_recv, {"files/notes.txt": "files/notes (1).txt"})
    assert (fetched.returncode, fetched.stdout) == (0, f"{got['path']}\n")
    assert Path(got["path"]).read_text() == "five\n"

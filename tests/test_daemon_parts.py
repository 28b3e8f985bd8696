"""The daemon's parts without processes: the JSON-RPC codec, the parameter schema, the event
queue (sealed at rest, deduplicated by key, acked by id) and the hub's subscriptions."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from client.daemon.config import DaemonConfig
from client.daemon.connections import RpcClient
from client.daemon.events import Event
from client.daemon.hub import CAUGHT_UP, EventHub
from client.daemon.jsonrpc import Codes, LineBuffer, LineTooLong, RpcError, parse_line
from client.daemon.methods import METHODS, TABLE
from client.daemon.queue import EventQueue
from client.daemon.server import Daemon
from client.daemon.table import check_params
from e2e_proto.at_rest import MINIMUM

ROOT = Path(__file__).resolve().parent.parent


@given(st.binary(max_size=300))
def test_parse_line_never_raises(data: bytes) -> None:
    parsed = parse_line(data)
    assert all(error["error"]["code"] in (-32700, -32600, -32602, -32003)
               for error in parsed.errors)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=12)


@given(json_values)
def test_any_json_is_a_call_or_an_answered_error_or_a_dropped_notification(value: Any) -> None:
    parsed = parse_line(json.dumps(value))
    items = value if isinstance(value, list) and 0 < len(value) <= 100 else [value]
    assert len(parsed.calls) + len(parsed.errors) <= len(items)
    for call in parsed.calls:
        assert isinstance(call.method, str) and isinstance(call.params, dict)


def test_notifications_and_batches() -> None:
    parsed = parse_line(b'[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":"x",'
                        b'"method":"b","params":{"k":1}}, 5]')
    assert parsed.batch
    assert [(c.method, c.notification, c.id) for c in parsed.calls] == [
        ("a", True, None), ("b", False, "x")]
    assert [e["error"]["code"] for e in parsed.errors] == [Codes.INVALID_REQUEST]
    assert parse_line(b"[" + b'{"jsonrpc":"2.0","method":"a"},' * 100 + b"1]",
                      max_batch=100).errors[0]["error"]["code"] == Codes.OVERLOADED
    assert parse_line(b'{"jsonrpc":"2.0","method":"a","params":[1]}').errors == []
    assert parse_line(b'{"jsonrpc":"2.0","id":true,"method":"a"}').errors[0]["id"] is None
    assert parse_line(b"NaN").errors[0]["error"]["code"] == Codes.PARSE_ERROR
    assert parse_line(b"[" * 100_000).errors[0]["error"]["code"] == Codes.PARSE_ERROR


def test_line_buffer_keeps_within_its_cap() -> None:
    lines = LineBuffer(max_line=10)
    lines.feed(b"0123456789\nabc")
    assert lines.next_line() == b"0123456789" and lines.next_line() is None
    lines.feed(b"defghij")
    assert lines.next_line() is None
    lines.feed(b"k")
    with pytest.raises(LineTooLong):
        lines.next_line()


def test_params_are_checked_against_the_schema() -> None:
    send = TABLE["send"]
    assert check_params(send, {"name": "bob", "text": "hi"}) == {
        "name": "bob", "text": "hi", "transport": None}
    for params, problem in [({"name": "bob"}, "needs 'text'"),
                            ({"name": "bob", "text": 1}, "'text' must be a string"),
                            ({"name": "", "text": "x"}, "'name' must be a string of 1 to"),
                            ({"name": "b", "text": "x", "to": 1}, "takes no parameter 'to'"),
                            ({"name": "b", "text": "x", "transport": "x"}, "'transport'")]:
        with pytest.raises(RpcError) as caught:
            check_params(send, params)
        assert caught.value.code == Codes.INVALID_PARAMS and problem in str(caught.value)
    with pytest.raises(RpcError):
        check_params(TABLE["unlink"], {"device_id": True})  # a bool is not an integer


def test_every_method_event_and_error_is_documented() -> None:
    docs = (ROOT / "docs" / "JSONRPC.md").read_text()
    for method in METHODS:
        section = re.search(rf"^### `{method.name}`\n(.*?)(?=^###? |\Z)", docs, re.M | re.S)
        assert section is not None, method.name
        for param in method.schema:
            assert f"`{param.name}`" in section.group(1), (method.name, param.name)
    for code in (value for name, value in vars(Codes).items() if name.isupper()):
        assert f"| {code} |" in docs, code
    for event in ("message", "sent", "reaction", "notice", "key_changed", "pin", "unpin",
                  "secret", "group_update", CAUGHT_UP, "call_ring", "call_joined", "call_left",
                  "call_ended"):
        assert f"`{event}`" in docs, event


def _queue(tmp_path: Path, passphrase: str | None = None, kept_keys: int = 100) -> EventQueue:
    return EventQueue(tmp_path, passphrase, kept_keys=kept_keys, cost=MINIMUM)


def test_queue_deduplicates_by_key_and_never_reuses_ids(tmp_path: Path) -> None:
    queue = _queue(tmp_path, kept_keys=1)
    first = queue.append("private:aa", "message", {"text": "one"})
    assert queue.append("private:aa", "message", {"text": "one"}) is None
    second = queue.append("private:bb", "message", {"text": "two"})
    assert first is not None and second is not None and second > first
    assert [(e.id, e.params["text"]) for e in queue.pending(0, 10)] == [(first, "one"),
                                                                       (second, "two")]
    assert queue.ack([first, 999]) == [first]
    assert queue.append("private:aa", "message", {"text": "one"}) is None  # a tombstone
    assert queue.pending_count == 1
    queue.ack([second])
    queue.close()
    reopened = _queue(tmp_path, kept_keys=1)
    assert reopened.pending_count == 0
    third = reopened.append("private:cc", "message", {"text": "three"})
    assert third is not None and third > second
    reopened.close()


def test_queue_bodies_are_sealed_at_rest(tmp_path: Path) -> None:
    queue = _queue(tmp_path, "correct horse")
    queue.append("private:aa", "message", {"text": "canary-7f3a"})
    queue.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("daemon.db*"))
    assert b"canary-7f3a" not in raw
    reopened = _queue(tmp_path, "correct horse")
    assert reopened.pending(0, 1)[0].params["text"] == "canary-7f3a"
    reopened.close()


async def test_subscriptions_window_caught_up_and_room(tmp_path: Path) -> None:
    config = DaemonConfig(max_queued_events=6, resume_queued_events=3, subscription_window=4)
    hub = EventHub(_queue(tmp_path), config)
    for i in range(6):
        hub.publish(Event(f"k{i}", "message", {"text": str(i)}))
    assert hub.full and not hub.room.is_set()
    got: list[dict[str, Any]] = []
    sent = trio.Event()

    async def deliver(notification: dict[str, Any]) -> None:
        got.append(notification)
        sent.set()

    subscription = hub.subscribe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscription.run, deliver)
        await trio.testing.wait_all_tasks_blocked()
        assert [n["params"]["text"] for n in got] == ["0", "1", "2", "3"]  # the window
        hub.ack([n["params"]["event_id"] for n in got[:3]])
        assert hub.room.is_set()  # 3 left: at the resume mark
        await trio.testing.wait_all_tasks_blocked()
        assert [n["method"] for n in got[4:]] == ["message", "message", CAUGHT_UP]
        hub.broadcast(Event("live", "sent", {"text": "own"}))
        await trio.testing.wait_all_tasks_blocked()
        assert got[-1] == {"jsonrpc": "2.0", "method": "sent", "params": {"text": "own"}}
        nursery.cancel_scope.cancel()
    assert subscription not in hub.subscriptions
    again = hub.subscribe()  # unacknowledged events go to the next subscription again
    got.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(again.run, deliver)
        await trio.testing.wait_all_tasks_blocked()
        assert [n["params"].get("text") for n in got] == ["3", "4", "5", None]
        nursery.cancel_scope.cancel()
    hub.queue.close()


def test_auth_is_refused_by_a_daemon_without_a_token(tmp_path: Path) -> None:
    config = DaemonConfig()
    daemon = Daemon(tmp_path, EventHub(_queue(tmp_path), config), {}, config, token=None)
    client = RpcClient(daemon, authenticated=False)
    for token in ("", "anything"):
        with pytest.raises(RpcError) as refused:
            client.authenticate(token)
        assert refused.value.code == Codes.UNAUTHORIZED and not client.authenticated
    daemon.hub.queue.close()


async def test_http_clients_are_rate_limited_per_host_not_per_connection(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    from client.daemon.http import serve_http

    config = DaemonConfig(requests_per_second=1e-9, request_burst=2)
    daemon = Daemon(tmp_path, EventHub(_queue(tmp_path), config), {}, config, token="secret")
    port = await nursery.start(serve_http, daemon, "127.0.0.1", 0)

    def post() -> int:
        web = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a new source port
        web.request("POST", "/rpc", b'{"jsonrpc":"2.0","id":1,"method":"daemon_info"}',
                    {"Authorization": "Bearer secret", "Content-Type": "application/json"})
        status = web.getresponse().status
        web.close()
        return status

    assert [await trio.to_thread.run_sync(post) for _ in range(4)] == [200, 200, 429, 429]
    nursery.cancel_scope.cancel()
    daemon.hub.queue.close()


async def test_key_change_is_an_event_and_accepting_queues_the_held_messages(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    from client.daemon import private_methods
    from client.daemon.accounts import PrivateAccount
    from tests.relay_harness import register_under_a_new_key, relay_with_alice_and_bob, session_of

    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(bob) as session:
        await session.send_text("alice", "before")
    config = DaemonConfig()
    hub = EventHub(_queue(tmp_path / "alice"), config)
    account = PrivateAccount(alice, hub, config)
    send, events = trio.open_memory_channel[dict[str, Any]](100)

    async def deliver(notification: dict[str, Any]) -> None:
        await send.send(notification)

    nursery.start_soon(account.run)
    nursery.start_soon(hub.subscribe().run, deliver)

    async def next_event(name: str) -> dict[str, Any]:
        while (note := await events.receive())["method"] != name:
            pass
        return note["params"]

    assert (await next_event("message"))["text"] == "before"
    new_bob = await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    async with session_of(new_bob) as session:
        await session.send_text("alice", "new phone")
    assert (await next_event("key_changed")) | {"event_id": 0, "subscription": 0} == {
        "event_id": 0, "subscription": 0, "transport": "private", "account": "bob"}
    result = await private_methods.verify(account, {"name": "bob", "accept": True})
    assert result["key_changed"] and result["released"] == 1
    assert (await next_event("message"))["text"] == "new phone"
    hub.queue.close()


def _file(message: str, path: str | None, error: str | None = None) -> Any:
    from client.core.files import FileRecord
    from e2e_proto.media import MediaPayload

    media = MediaPayload(b"\x01" * 32, b"\x02" * 32, b"\x03" * 24, 5, "text/plain", "notes.txt",
                         "a caption", None)
    return FileRecord(message, media, path, None if path is None else b"\x04" * 32, error)


@pytest.mark.parametrize("saved", [True, False])
@pytest.mark.parametrize("group", [None, "team"])
@pytest.mark.parametrize("outgoing", [False, True])
def test_private_events_print_as_the_cli_prints_the_message(
        capsys: pytest.CaptureFixture[str], saved: bool, group: str | None,
        outgoing: bool) -> None:
    from client.cli.private import printer
    from client.daemon.events import private_event, received_from_params
    from client.private.received import Received

    message_id = bytes(range(16))
    texts = [Received("alice", 1, "bob", message_id, 1700, "text", "hi", outgoing, group=group),
             Received("alice", 1, "bob", message_id, 1700, "media", "a caption", outgoing,
                      file=_file(message_id.hex(), "/home/files/notes.txt" if saved else None,
                                 None if saved else "the relay has no such blob"),
                      group=group)]
    for received in texts:
        event = private_event(received)
        assert event.name == ("sent" if outgoing else "message")
        params = json.loads(json.dumps(event.params))  # as a subscriber reads it
        assert params["group"] == group
        if received.file is not None:
            assert {k: params[k] for k in ("path", "size", "mime", "name", "caption")} == {
                "path": received.file.path, "size": 5, "mime": "text/plain",
                "name": "notes.txt", "caption": "a caption"}
            assert params["sha256"] == (("04" * 32) if saved else None)
            assert "key" not in params and "blob_id" not in params
        shown = received_from_params(event.name, params)
        for as_json in (False, True):
            printer(as_json)(received)
            direct = capsys.readouterr().out
            printer(as_json)(shown)
            assert capsys.readouterr().out == direct


@pytest.mark.parametrize("saved", [True, False])
def test_social_file_events_print_as_the_cli_prints_them(capsys: pytest.CaptureFixture[str],
                                                         saved: bool) -> None:
    from client.cli.social import printer
    from client.daemon.events import social_event, social_event_from_params
    from client.social.state import SocialEvent

    event = SocialEvent(7, "message", "team", "alice", 1, 1700, 42, "a caption", None, False,
                        file=_file("42", "/home/files/notes.txt" if saved else None,
                                   None if saved else "download failed"))
    queued = social_event(event)
    assert queued.name == "message" and queued.params["mime"] == "text/plain"
    shown = social_event_from_params(json.loads(json.dumps(queued.params)))
    for as_json in (False, True):
        printer(as_json, "bob")(event)
        direct = capsys.readouterr().out
        printer(as_json, "bob")(shown)
        assert capsys.readouterr().out == direct
        assert "notes.txt" in direct


def test_rings_are_call_ring_events_that_print_as_the_cli_prints_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    from client.cli import private as private_cli
    from client.cli import social as social_cli
    from client.core.calls import CallInfo
    from client.daemon.events import (
        received_from_params,
        ring_event,
        social_event,
        social_event_from_params,
    )
    from client.private.received import Received
    from client.social.state import SocialEvent
    from e2e_proto.address import Address

    call_id = bytes(range(16))
    one = CallInfo(call_id, Address("alice", 2), 1, 8, True, None)
    group = CallInfo(call_id, Address("alice", 2), 3, 50, False, "pals")
    private_ring = Received("alice", 2, "alice", call_id, 1700, "call",
                            "[is calling you; answer: e2e-chat call --answer]", call=one)
    social_ring = SocialEvent(0, "call", "pals", "alice", 2, 1700,
                              text="[started a call in pals; join it: ...]", call=group)
    for ring, info, shown_as, printer in (
            (private_ring, one, received_from_params, private_cli.printer),
            (social_ring, group, lambda name, params: social_event_from_params(params),
             lambda as_json: social_cli.printer(as_json, "bob"))):
        event = ring_event(ring)
        assert event is not None and event.name == "call_ring"
        params = json.loads(json.dumps(event.params))  # as a subscriber reads it
        assert (params["call_id"], params["group"], params["end_to_end"],
                params["participants"], params["limit"], params["from"]) == (
            call_id.hex(), info.group, info.e2e, info.participants, info.limit, "alice")
        for as_json in (False, True):
            printer(as_json)(ring)
            direct = capsys.readouterr().out
            printer(as_json)(shown_as("call_ring", params))
            assert capsys.readouterr().out == direct and "alice" in direct
    message = SocialEvent(5, "message", "pals", "alice", 2, 1700, 9, "hi")
    assert ring_event(message) is None and social_event(message).name == "message"


def test_a_call_report_prints_the_same_after_the_daemon_sends_it() -> None:
    from client.cli.calls import format_report
    from client.core.calls import CallReport, ParticipantReport
    from e2e_proto.address import Address

    report = CallReport(bytes(range(16)), 2, True, 4.0123, 200, [
        ParticipantReport(1, Address("alice", 0), 180, 2, 0, 1, 3, 4, 1.25, 9.5),
        ParticipantReport(7, None, 0, 0, 1, 0, 0, 0, None, None)], 1, ["alice.0 joined"])
    sent = json.loads(json.dumps(report.as_json()))
    assert CallReport.from_json(sent).as_json() == report.as_json()
    assert format_report(CallReport.from_json(sent)) == format_report(report)
    assert "alice.0" in format_report(report) and "notices: alice.0 joined" in (
        format_report(report))


def _as_read(result: Any) -> Any:
    """``result`` as a client of the daemon reads it."""
    return json.loads(json.dumps(result))


def test_results_between_the_transports_print_as_the_cli_prints_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    from functools import partial

    from client.cli import between as cli
    from client.daemon import between_methods as between
    from client.daemon.forward import RENDER
    from client.private.account_link import SharingLogEntry, SharingReport
    from client.social.cross import CrossStatus
    from client.social.profiles import ShownProfile
    from e2e_proto.account_link import (
        SharedAccount,
        SharedDevice,
        SharedProfile,
        SharedRecord,
        SharedStatus,
    )
    from e2e_proto.capabilities import PRIVATE, SOCIAL
    from e2e_proto.profiles import Profile

    def same(direct: Any, transport: str, method: str, result: dict[str, Any]) -> str:
        direct()
        printed = capsys.readouterr().out
        RENDER[(transport, method)](argparse.Namespace(transport=transport), _as_read(result))
        assert capsys.readouterr().out == printed, (method, result)
        return printed

    record = SharedRecord(SharedAccount("alice", 1_700_000_000_000),
                          SharedProfile("Alice", "curious"),
                          (SharedStatus("out", 1_700_000_100_000),),
                          (SharedDevice("phone", None), SharedDevice("", 1_700_000_200_000)))
    for avatar in (None, _file("k", "/home/files/me.png"), _file("k", None, "no such blob")):
        shown = ShownProfile("alice", Profile("Alice", "about"), avatar)
        for end_to_end in (True, False):
            same(partial(cli.print_profile, shown, end_to_end), PRIVATE, "profile_show",
                 between.profile_json(shown, end_to_end))
    statuses = [("alice", "hi", 1_700_000_000_000), ("bob", "yo", 1_690_000_000_000)]
    for listed in (statuses, []):
        same(partial(cli.print_statuses, listed), SOCIAL, "status_list",
             {"statuses": between.statuses_json(listed)})
    report = SharingReport([SharingLogEntry(1_700_000_000.5, "linked", b"\x07" * 16, "linked",
                                            None),
                            SharingLogEntry(1_700_000_001.0, "shared", b"\x07" * 16, "shared",
                                            record)],
                           (b"\x07" * 16, "bob", 1_700_000_000.5), True)
    for log in (report, SharingReport([], None, False)):
        assert "display name" in same(partial(cli.print_sharing, log), PRIVATE, "sharing",
                                      between.sharing_json(log)) or log.linked is None
    same(partial(cli.print_linked_account, "alice", "bob", report), PRIVATE, "link_account",
         {"account": "alice", "social_account": "bob", "sharing": between.sharing_json(report)})
    for linked in (None, ("alice", 1_700_000_000.0, None), ("alice", 1_700_000_000.0, record)):
        assert between.linked_from_json(_as_read(between.linked_json(linked))) == linked
        same(partial(cli.print_linked, linked), SOCIAL, "linked", between.linked_json(linked))
    joined = CrossStatus("joined", b"\x01" * 32, [0])
    same(partial(cli.print_cross_status, SOCIAL, joined, cli.cross_on_enabled(joined), "bob"),
         SOCIAL, "cross_on", {"account": "bob", "enabled": False, "outcome": "joined",
                              "device_key": "01" * 32, "devices": [0]})
    same(partial(cli.print_cross_status, PRIVATE, None, True, "alice"), PRIVATE, "cross_on",
         {"account": "alice", "enabled": True, "notices": []})
    same(partial(cli.print_cross_report, "bob", True, [0, 2], [(3, b"\x02" * 32)]), SOCIAL,
         "cross_status", {"account": "bob", "enabled": True, "devices": [0, 2],
                          "joins": [{"device_id": 3, "key": "02" * 32}]})
    same(partial(cli.print_cross_devices, 3, [0, 3], False), SOCIAL, "cross_remove",
         {"device_id": 3, "devices": [0, 3]})


async def test_a_private_method_answers_the_notices_the_cli_prints(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    from client.daemon import between_methods
    from client.daemon.accounts import PrivateAccount
    from tests.relay_harness import register_under_a_new_key, relay_with_alice_and_bob, session_of

    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as session:
        await session.send_text("bob", "hi")  # bob is a contact: profiles go to it
    await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    async with session_of(alice) as session:
        await session.device_list("bob", refresh=True)  # the new key: held until accepted
    config = DaemonConfig()
    hub = EventHub(_queue(tmp_path / "alice"), config)
    account = PrivateAccount(alice, hub, config)
    await nursery.start(account.run)
    assert account.live is not None
    account.live.notices.append("an earlier notice")  # not this call's: it stays
    result = await between_methods.private_status_post(account, {"text": "new phone"})
    assert result["notices"] == ["not sent to bob: the account key of 'bob' changed: check the "
                                 "safety number with 'e2e-chat verify bob', then accept it with "
                                 "'e2e-chat verify bob --accept'"]
    assert account.live.notices == ["an earlier notice"]  # this call's answered, not queued
    hub.queue.close()

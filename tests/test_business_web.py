"""The inbox's web app over HTTP, built with real parts (store, agents, gates) and served by
Hypercorn's trio worker on a free port; requests are made with the standard library's
http.client, as any HTTP client would (the browser tests are in test_business_browser.py)."""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import nacl.pwhash
import pytest
import trio
import trustme
from starlette.applications import Starlette
from starlette.types import Message

from client.business import agents as agents_module
from client.business.agents import (
    Agents,
    LoginRefused,
    check_agent_name,
    hash_password,
    password_matches,
)
from client.business.analytics import ANALYTICS_FIELDS, daily_figures
from client.business.changes import Changes
from client.business.config import InboxConfig
from client.business.serving import allowed_hosts, hypercorn_config, serve_http
from client.business.store import Attachment, InboxStore
from client.business.web import build_app, linkify
from client.core.binding import check_bind
from client.core.errors import ClientError
from e2e_proto.at_rest import MINIMUM
from e2e_proto.capabilities import PRIVATE, SOCIAL
from tests.fault_support import ROOT

FAST_PASSWORD = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
PASSWORD = "agent password 1"


@dataclass
class Browserless:
    """An HTTP client with a cookie jar, talking to the inbox on ``port``."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie_name, _, rest = value.partition("=")
                cookie_value = rest.split(";", 1)[0]
                if "max-age=0" in value.lower():
                    self.cookies.pop(cookie_name, None)
                else:
                    self.cookies[cookie_name] = cookie_value
        headers_out = {name.lower(): value for name, value in response.getheaders()}
        headers_out["set-cookie"] = "\n".join(v for n, v in response.getheaders()
                                              if n.lower() == "set-cookie")
        connection.close()
        return response.status, headers_out, data

    async def call(self, method: str, path: str, form: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return await trio.to_thread.run_sync(self.request, method, path, form, headers)

    async def log_in(self, name: str = "ann", password: str = PASSWORD) -> int:
        status, _, page = await self.call("GET", "/login")
        assert status == 200
        status, _, _ = await self.call("POST", "/login", {"csrf": csrf_of(page), "name": name,
                                                          "password": password})
        return status


def csrf_of(page: bytes) -> str:
    found = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1).decode()


@dataclass
class Running:
    store: InboxStore
    changes: Changes
    port: int
    home: Path
    app: Starlette
    now: list[float]

    def client(self) -> Browserless:
        return Browserless(self.port)


@pytest.fixture
async def inbox(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Running]:
    store = InboxStore(tmp_path / "inbox", "inbox passphrase", MINIMUM)
    for name in ("ann", "bob"):
        store.set_agent(name, hash_password(PASSWORD, FAST_PASSWORD), 0.0)
    changes = Changes()
    config = InboxConfig(login_burst=3, session_idle_seconds=600, session_max_seconds=3600)
    now = [1_000_000.0]
    app = build_app(store, {}, changes, config, clock=lambda: now[0])
    port = await nursery.start(serve_http, app, hypercorn_config("127.0.0.1", 0))
    yield Running(store, changes, port, tmp_path / "inbox", app, now)
    nursery.cancel_scope.cancel()
    store.close()


def customer_message(store: InboxStore, transport: str, peer: str, text: str,
                     file: Attachment | None = None, at: float = 1000.0) -> int:
    conversation = store.conversation_for(transport, peer, transport == PRIVATE, at)
    message = store.add_message(conversation, f"m{at}", True, at, text, file)
    assert message is not None
    return message


async def test_every_route_needs_a_logged_in_agent(inbox: Running) -> None:
    customer_message(inbox.store, PRIVATE, "carol", "hello")
    client = inbox.client()
    paths = {"/", "/conversations/1", "/fragments/list", "/fragments/thread/1", "/files/1",
             "/events", "/analytics", "/analytics.json"}
    listed = {route.path.replace("{conversation:int}", "1").replace("{message:int}", "1")
              for route in inbox.app.routes
              if getattr(route, "methods", None) and "GET" in route.methods}
    assert listed - {"/login"} == paths  # a new GET route must be added here
    for path in sorted(paths):
        status, headers, _ = await client.call("GET", path)
        assert status == 401, path
        status, headers, _ = await client.call("GET", path, headers={"Accept": "text/html"})
        assert (status, headers["location"]) == (303, "/login"), path
    for action in ("reply", "assign", "close", "reopen"):
        status, _, _ = await client.call("POST", f"/conversations/1/{action}", {"text": "x"})
        assert status == 401
    assert (await client.call("GET", "/login"))[0] == 200
    assert (await client.call("GET", "/static/inbox.css"))[0] == 200


async def test_login_cookie_flags_logout_and_a_stolen_cookie(inbox: Running) -> None:
    client = inbox.client()
    status, headers, page = await client.call("GET", "/login")
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    status, headers, _ = await client.call("POST", "/login", {
        "csrf": csrf_of(page), "name": "ann", "password": PASSWORD})
    assert (status, headers["location"]) == (303, "/")
    session_cookie = next(line for line in headers["set-cookie"].splitlines()
                          if line.startswith("inbox_session="))
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie
    assert "Secure" not in session_cookie  # no TLS here; see test_secure_cookies_with_tls
    status, _, page = await client.call("GET", "/")
    assert status == 200 and b"ann" in page
    stolen = dict(client.cookies)
    status, headers, _ = await client.call("POST", "/logout", {"csrf": csrf_of(page)})
    assert (status, headers["location"]) == (303, "/login")
    thief = inbox.client()
    thief.cookies = stolen
    assert (await thief.call("GET", "/analytics.json"))[0] == 401
    assert (await thief.call("GET", "/", headers={"Accept": "text/html"}))[0] == 303
    # The file keeps no usable cookie: only hashes of session tokens.
    token = stolen["inbox_session"]
    assert await client.log_in() == 303
    raw = inbox.store.db.execute("SELECT token_hash FROM agent_sessions").fetchall()
    assert raw and all(token.encode() not in bytes(row[0]) for row in raw)


async def test_sessions_end_when_idle_or_old(inbox: Running) -> None:
    client = inbox.client()
    assert await client.log_in() == 303
    for _ in range(6):  # used every 590 s: never idle for 600 s
        inbox.now[0] += 590
        assert (await client.call("GET", "/analytics.json"))[0] == 200
    inbox.now[0] += 590  # 4130 s after the login: past session_max_seconds
    assert (await client.call("GET", "/analytics.json"))[0] == 401
    assert await client.log_in() == 303
    inbox.now[0] += 601
    assert (await client.call("GET", "/analytics.json"))[0] == 401
    assert inbox.store.db.execute("SELECT COUNT(*) FROM agent_sessions").fetchone() == (0,)


async def test_csrf_missing_forged_or_from_another_site_is_refused(inbox: Running) -> None:
    customer_message(inbox.store, PRIVATE, "carol", "hello")
    client = inbox.client()
    assert await client.log_in() == 303
    _, _, page = await client.call("GET", "/conversations/1")
    token = csrf_of(page)
    other = inbox.client()
    assert await other.log_in("bob") == 303
    _, _, other_page = await other.call("GET", "/")
    for form in ({"agent": "bob"}, {"agent": "bob", "csrf": "forged"},
                 {"agent": "bob", "csrf": csrf_of(other_page)},  # another session's token
                 {"agent": "bob", "csrf": ""}):
        status, _, _ = await client.call("POST", "/conversations/1/assign", form)
        assert status == 403, form
    status, _, _ = await client.call("POST", "/conversations/1/assign",
                                     {"agent": "bob", "csrf": token},
                                     headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _, _ = await client.call("POST", "/conversations/1/assign",
                                     headers={"Content-Type": "application/json"})
    assert status == 415
    assert inbox.store.conversation(1).agent is None  # type: ignore[union-attr]
    status, _, _ = await client.call("POST", "/conversations/1/assign",
                                     {"agent": "bob", "csrf": token})
    assert status == 303
    assert inbox.store.conversation(1).agent == "bob"  # type: ignore[union-attr]
    # The login form has its own token, bound to its cookie.
    fresh = inbox.client()
    await fresh.call("GET", "/login")
    status, _, _ = await fresh.call("POST", "/login", {"csrf": "forged", "name": "ann",
                                                       "password": PASSWORD})
    assert status == 403 and "inbox_session" not in fresh.cookies
    status, _, _ = await client.call("POST", "/login", {"csrf": token, "name": "ann",
                                                        "password": PASSWORD})
    assert status == 403  # a session's token is no login token


async def test_brute_forced_logins_are_rate_limited(inbox: Running) -> None:
    client = inbox.client()
    for _ in range(3):  # the burst (login_burst=3)
        assert await client.log_in("ann", "wrong password!") == 401
    assert await client.log_in("ann", "wrong password!") == 429
    assert await client.log_in("ann", PASSWORD) == 429  # even the right one, for now
    assert "inbox_session" not in client.cookies
    # Per name too: another address guessing ann's password is limited as well.
    assert await inbox.client().log_in("ann", PASSWORD) == 429
    assert await inbox.client().log_in("bob", PASSWORD) == 429  # same address (127.0.0.1)


async def test_login_limits_survive_attempts_on_many_other_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the limits are under test: password checks are instant here.
    monkeypatch.setattr(agents_module, "hash_password", lambda password: b"dummy")
    monkeypatch.setattr(agents_module, "password_matches", lambda stored, password: False)
    store = InboxStore(tmp_path / "inbox")
    agents = Agents(store, InboxConfig(login_burst=3, login_rate_per_second=1e-9),
                    clock=lambda: 1000.0)

    async def refusal(name: str, address: str) -> LoginRefused:
        with pytest.raises(LoginRefused) as refused:
            await agents.log_in(name, "a guessed password", address)
        return refused.value

    for _ in range(3):
        assert not (await refusal("ann", "192.0.2.1")).limited
    assert (await refusal("ann", "192.0.2.2")).limited  # ann's name has no attempts left
    for i in range(5000):  # an attacker's other names, from as many addresses
        assert not (await refusal(f"name{i}", f"10.0.{i // 256}.{i % 256}")).limited
    assert (await refusal("ann", "192.0.2.3")).limited  # still: forgetting never resets a limit
    store.close()


async def test_at_most_two_password_checks_run_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each Argon2id check takes 64 MiB: logins arriving at once must not all run together.
    changed, release = threading.Condition(), threading.Event()
    running, peak = [0], [0]

    def slow_check(stored: bytes, password: str) -> bool:
        with changed:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            changed.notify_all()
        release.wait(30)
        with changed:
            running[0] -= 1
        return False

    monkeypatch.setattr(agents_module, "password_matches", slow_check)
    store = InboxStore(tmp_path / "inbox")
    for name in ("ann", "bob"):
        store.set_agent(name, hash_password(PASSWORD, FAST_PASSWORD), 0.0)
    agents = Agents(store, InboxConfig(), clock=lambda: 1000.0)

    async def guess(i: int) -> None:
        with pytest.raises(LoginRefused):
            await agents.log_in(("ann", "bob")[i % 2], "a guessed password", f"10.0.0.{i}")

    def two_running() -> None:
        with changed:
            assert changed.wait_for(lambda: running[0] >= 2, 30)

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(guess, i)
        await trio.testing.wait_all_tasks_blocked()  # every guess waits: for a check or a turn
        await trio.to_thread.run_sync(two_running, limiter=trio.CapacityLimiter(1))
        release.set()
    assert peak[0] == 2
    store.close()


async def test_another_host_header_is_refused(inbox: Running) -> None:
    client = inbox.client()
    assert await client.log_in() == 303
    for host in ("evil.example", f"evil.example:{inbox.port}", "127.0.0.2"):
        status, _, _ = await client.call("GET", "/analytics.json", headers={"Host": host})
        assert status == 400, host
    status, _, _ = await client.call("GET", "/analytics.json",
                                     headers={"Host": f"localhost:{inbox.port}"})
    assert status == 200


async def test_pages_escape_and_carry_the_security_headers(inbox: Running) -> None:
    hostile = '<script>alert(1)</script> <img src=x onerror=alert(2)> javascript:alert(3)'
    customer_message(inbox.store, SOCIAL, '"><svg onload=alert(4)>', hostile)
    client = inbox.client()
    assert await client.log_in() == 303
    status, headers, page = await client.call("GET", "/conversations/1")
    assert status == 200
    assert b"<script>alert" not in page and b"<img src=x" not in page and b"<svg" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert b"&#34;&gt;&lt;svg onload=alert(4)&gt;" in page
    assert b'href="javascript' not in page
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert b"<script" not in page.replace(b'<script src="/static/inbox.js" defer></script>', b"")


def test_linkify_links_only_http_addresses() -> None:
    text = 'see https://shop.example/a?b=1&c="2" or javascript:alert(1) <b>'
    html = str(linkify(text))
    assert html.count("<a ") == 1
    assert 'href="https://shop.example/a?b=1&amp;c=' in html
    assert "javascript:alert(1) &lt;b&gt;" in html
    assert str(linkify("JAVASCRIPT://x")) == "JAVASCRIPT://x"


async def test_files_are_served_safely_and_only_from_the_files_folder(inbox: Running) -> None:
    files = inbox.home / "files"
    files.mkdir(mode=0o700)
    (files / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (files / "page.html").write_bytes(b"<script>alert(1)</script>")
    outside = inbox.home / "secret.txt"
    outside.write_bytes(b"not for agents")
    (files / "link.txt").symlink_to(outside)
    image = customer_message(inbox.store, PRIVATE, "carol", "", Attachment(
        "photo.png", "image/png", 20, str(files / "photo.png"), None), at=1.0)
    html = customer_message(inbox.store, PRIVATE, "carol", "", Attachment(
        '"><svg onload=alert(1)>.html', "text/html", 25, str(files / "page.html"), None), at=2.0)
    svg = customer_message(inbox.store, PRIVATE, "carol", "", Attachment(
        "a.svg", "image/svg+xml", 25, str(files / "page.html"), None), at=3.0)
    escaped = customer_message(inbox.store, PRIVATE, "carol", "", Attachment(
        "secret.txt", "text/plain", 14, str(outside), None), at=4.0)
    linked = customer_message(inbox.store, PRIVATE, "carol", "", Attachment(
        "link.txt", "text/plain", 14, str(files / "link.txt"), None), at=5.0)
    client = inbox.client()
    assert (await client.call("GET", f"/files/{image}"))[0] == 401
    assert await client.log_in() == 303
    status, headers, body = await client.call("GET", f"/files/{image}")
    assert status == 200 and body.startswith(b"\x89PNG")
    assert headers["content-type"] == "image/png"
    assert headers["content-disposition"] == 'inline; filename="photo.png"'
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'; sandbox"
    for message in (html, svg):
        status, headers, _ = await client.call("GET", f"/files/{message}")
        assert status == 200
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"].startswith("attachment; filename")
        assert '"' not in headers["content-disposition"].partition("filename")[2].strip('"=')
    assert (await client.call("GET", f"/files/{escaped}"))[0] == 404
    assert (await client.call("GET", f"/files/{linked}"))[0] == 404
    assert (await client.call("GET", "/files/999"))[0] == 404
    _, _, page = await client.call("GET", "/conversations/1")
    assert f'<img class="attachment" src="/files/{image}"'.encode() in page
    assert f'href="/files/{html}" download'.encode() in page
    assert f'src="/files/{svg}"'.encode() not in page


async def test_ids_beyond_sqlite_integers_are_not_found(inbox: Running) -> None:
    customer_message(inbox.store, PRIVATE, "carol", "hello")
    client = inbox.client()
    assert await client.log_in() == 303
    _, _, page = await client.call("GET", "/conversations/1")
    token = csrf_of(page)
    for huge in (2**63 - 1, 2**63, 10**40):  # the largest SQLite integer, and past it
        for path in (f"/conversations/{huge}", f"/fragments/thread/{huge}", f"/files/{huge}"):
            assert (await client.call("GET", path))[0] == 404, path
        for action in ("reply", "assign", "close", "reopen"):
            status, _, _ = await client.call("POST", f"/conversations/{huge}/{action}",
                                             {"csrf": token, "text": "x", "agent": ""})
            assert status == 404, (huge, action)
    for open_id in (str(2**63), "10" * 20, "%C2%B2", "-1"):  # "²" is a digit to str.isdigit
        status, _, listed = await client.call("GET", f"/fragments/list?open={open_id}")
        assert status == 200 and b"carol" in listed, open_id


async def test_assign_close_reopen_and_unread(inbox: Running) -> None:
    customer_message(inbox.store, PRIVATE, "carol", "one", at=10.0)
    customer_message(inbox.store, SOCIAL, "dave", "two", at=20.0)
    customer_message(inbox.store, SOCIAL, "dave", "three", at=30.0)
    client = inbox.client()
    assert await client.log_in() == 303
    _, _, page = await client.call("GET", "/fragments/list")
    assert page.index(b"dave") < page.index(b"carol")  # newest first
    assert re.search(rb'dave</span><span class="unread-count"[^>]*>2<', page)
    _, _, page = await client.call("GET", "/conversations/2")
    token = csrf_of(page)
    assert inbox.store.conversation(2).unread == 0  # type: ignore[union-attr]
    assert (await client.call("POST", "/conversations/2/assign",
                              {"csrf": token, "agent": "nobody-such"}))[0] == 400
    assert (await client.call("POST", "/conversations/2/assign",
                              {"csrf": token, "agent": "ann"}))[0] == 303
    _, _, mine = await client.call("GET", "/fragments/list?show=mine")
    assert b"dave" in mine and b"carol" not in mine
    assert (await client.call("POST", "/conversations/2/close", {"csrf": token}))[0] == 303
    _, _, listed = await client.call("GET", "/fragments/list?show=open")
    assert b"dave" not in listed
    _, _, listed = await client.call("GET", "/fragments/list?show=closed")
    assert b"dave" in listed
    customer_message(inbox.store, SOCIAL, "dave", "four", at=40.0)  # reopens it
    assert not inbox.store.conversation(2).closed  # type: ignore[union-attr]
    assert (await client.call("POST", "/conversations/2/close", {"csrf": token}))[0] == 303
    assert (await client.call("POST", "/conversations/2/reopen", {"csrf": token}))[0] == 303
    assert not inbox.store.conversation(2).closed  # type: ignore[union-attr]
    # No line for the transport: the reply is refused with the reason, nothing stored.
    status, _, page = await client.call("POST", "/conversations/2/reply",
                                        {"csrf": token, "text": "hello dave"})
    assert status == 400 and b"this inbox has no Social account" in page
    assert [m.text for m in inbox.store.messages(2, 10)] == ["two", "three", "four"]


async def test_live_update_stream_says_only_that_something_changed(inbox: Running) -> None:
    client = inbox.client()
    assert await client.log_in() == 303
    connection = http.client.HTTPConnection("127.0.0.1", inbox.port, timeout=30)

    def open_stream() -> http.client.HTTPResponse:
        connection.request("GET", "/events", headers={
            "Host": f"127.0.0.1:{inbox.port}",
            "Cookie": f"inbox_session={client.cookies['inbox_session']}"})
        return connection.getresponse()

    response = await trio.to_thread.run_sync(open_stream)
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    assert await trio.to_thread.run_sync(response.readline) == b"retry: 3000\n"
    await trio.to_thread.run_sync(response.readline)
    customer_message(inbox.store, PRIVATE, "carol", "a secret text")
    inbox.changes.changed()
    lines = [await trio.to_thread.run_sync(response.readline) for _ in range(2)]
    assert lines == [b"event: changed\n", b"data: 1\n"]
    connection.close()


async def test_live_streams_are_capped_even_when_asked_for_at_once(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    store = InboxStore(tmp_path / "inbox")
    store.set_agent("ann", hash_password(PASSWORD, FAST_PASSWORD), 0.0)
    store.add_session("the-cookie", "ann", "the-csrf", 1000.0)
    app = build_app(store, {}, Changes(), InboxConfig(max_event_streams=2),
                    clock=lambda: 1000.0)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/events", "raw_path": b"/events",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8080),
             "headers": [(b"host", b"127.0.0.1"), (b"cookie", b"inbox_session=the-cookie")]}
    statuses: dict[int, int] = {}

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError

    async def ask(request: int, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        async def stuck_at_the_headers(message: Message) -> None:
            # A browser that has not taken the headers yet: the stream has not begun.
            if message["type"] == "http.response.start":
                statuses[request] = message["status"]
                if message["status"] == 200:
                    await trio.sleep_forever()

        with trio.CancelScope() as scope_of_request:
            task_status.started(scope_of_request)
            await app(dict(scope), receive, stuck_at_the_headers)

    requests = [await nursery.start(ask, i) for i in range(3)]
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(statuses.values()) == [200, 200, 503]
    for request, status in statuses.items():  # both pages go away before their streams began
        if status == 200:
            requests[request].cancel()
    await trio.testing.wait_all_tasks_blocked()
    for i in (3, 4):
        await nursery.start(ask, i)
    await trio.testing.wait_all_tasks_blocked()
    assert (statuses[3], statuses[4]) == (200, 200)  # their places were given back
    nursery.cancel_scope.cancel()
    store.close()


async def test_analytics_report_only_the_allow_list(inbox: Running) -> None:
    day = 86400.0 * 20000  # 2024-10-04, UTC
    store = inbox.store
    carol = store.conversation_for(PRIVATE, "carol", True, day)
    store.add_message(carol, "1", True, day + 10, "the secret recipe")
    store.add_message(carol, "2", True, day + 20, "are you there?")
    store.add_message(carol, "3", False, day + 70, "yes", author="ann")
    dave = store.conversation_for(SOCIAL, "dave", False, day)
    store.add_message(dave, "1", True, day + 100, "hi")
    store.add_message(dave, "2", False, day + 130, "hello", author="ann")
    store.add_message(dave, "3", True, day + 86400, "next day")
    client = inbox.client()
    assert await client.log_in() == 303
    status, _, body = await client.call("GET", "/analytics.json")
    assert status == 200
    records = json.loads(body)
    assert all(tuple(record) == ANALYTICS_FIELDS for record in records)
    assert records == [
        {"day": "2024-10-05", "transport": SOCIAL, "received": 1, "sent": 0, "answered": 0,
         "median_response_seconds": None},
        {"day": "2024-10-04", "transport": SOCIAL, "received": 1, "sent": 1, "answered": 1,
         "median_response_seconds": 30.0},
        {"day": "2024-10-04", "transport": PRIVATE, "received": 2, "sent": 1, "answered": 1,
         "median_response_seconds": 60.0}]
    for text in (b"secret recipe", b"carol", b"dave", b"ann"):
        assert text not in body
    _, _, page = await client.call("GET", "/analytics")
    assert b"secret recipe" not in page and b"60 s" in page


def test_daily_figures_pair_each_wait_with_the_next_answer() -> None:
    timeline = [(PRIVATE, 1, True, 0.0), (PRIVATE, 2, True, 5.0), (PRIVATE, 1, False, 10.0),
                (PRIVATE, 1, False, 11.0), (PRIVATE, 2, False, 25.0), (PRIVATE, 1, True, 30.0)]
    (figures,) = daily_figures(timeline)
    assert (figures.received, figures.sent, figures.answered) == (3, 3, 2)
    assert figures.median_response_seconds == 15.0  # waits of 10 and 20 seconds


def test_store_is_sealed_at_rest(tmp_path: Path) -> None:
    store = InboxStore(tmp_path / "inbox", "passphrase", MINIMUM)
    conversation = store.conversation_for(SOCIAL, "dave", True, 1.0)
    store.add_message(conversation, "7", True, 1.0, "MY-CARD-NUMBER", Attachment(
        "MY-PASSPORT.jpg", "image/jpeg", 3, str(tmp_path / "MY-PATH"), "MY-ERROR"))
    store.close()
    raw = b"".join(path.read_bytes() for path in (tmp_path / "inbox").iterdir())
    for secret in (b"MY-CARD-NUMBER", b"MY-PASSPORT", b"MY-PATH", b"MY-ERROR"):
        assert secret not in raw
    reopened = InboxStore(tmp_path / "inbox", "passphrase", MINIMUM)
    (message,) = reopened.messages(conversation, 10)
    assert message.text == "MY-CARD-NUMBER" and message.file is not None
    assert (message.file.name, message.file.error) == ("MY-PASSPORT.jpg", "MY-ERROR")
    # A value moved to another row does not open there.
    reopened.add_message(conversation, "8", True, 2.0, "other")
    reopened.db.execute("UPDATE messages SET text = (SELECT text FROM messages WHERE id = 1) "
                        "WHERE id = 2")
    with pytest.raises(Exception, match="passphrase"):
        reopened.messages(conversation, 10)
    reopened.close()
    with pytest.raises(Exception, match="passphrase"):
        InboxStore(tmp_path / "inbox", "wrong", MINIMUM)
    assert sqlite3.connect(tmp_path / "inbox" / "inbox.db").execute(
        "SELECT COUNT(*) FROM messages").fetchone() == (2,)


def test_message_seen_twice_is_stored_once_and_counts_once(tmp_path: Path) -> None:
    store = InboxStore(tmp_path / "inbox")
    conversation = store.conversation_for(PRIVATE, "carol", True, 1.0)
    assert store.add_message(conversation, "abc", True, 1.0, "hi") is not None
    assert store.add_message(conversation, "abc", True, 2.0, "hi") is None
    assert store.conversation(conversation).unread == 1  # type: ignore[union-attr]
    # Once end-to-end encrypted, a conversation stays so.
    social = store.conversation_for(SOCIAL, "dave", True, 1.0)
    assert store.conversation_for(SOCIAL, "dave", False, 2.0) == social
    assert store.conversation(social).end_to_end  # type: ignore[union-attr]
    store.close()


def test_agent_names_and_passwords() -> None:
    stored = hash_password("long enough password", FAST_PASSWORD)
    assert stored.startswith(b"$argon2id$")
    assert password_matches(stored, "long enough password")
    assert not password_matches(stored, "long enough passwort")
    assert not password_matches(b"not a hash", "long enough password")
    with pytest.raises(ClientError):
        hash_password("short", FAST_PASSWORD)
    for bad in ("Ann", "", "a" * 33, "ann smith", "../x", "-ann"):
        with pytest.raises(ClientError):
            check_agent_name(bad)


def test_binding_beyond_loopback_needs_tls(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.8.9.10"):
        check_bind(host, False, "the inbox", "")
    check_bind("0.0.0.0", True, "the inbox", "")
    for host in ("0.0.0.0", "192.0.2.1", "inbox.example", "::"):
        with pytest.raises(ClientError, match="TLS"):
            check_bind(host, False, "the inbox", "")
    assert allowed_hosts("127.0.0.1") == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts("0.0.0.0", ["Inbox.Example"]) == ("0.0.0.0", "inbox.example")
    done = subprocess.run([sys.executable, "-m", "client.business.main", "--home",
                           str(tmp_path / "inbox"), "serve", "--http", "0.0.0.0:8443"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("e2e-business: the inbox serves 0.0.0.0 only with TLS: give "
                           "--tls-cert and --tls-key (or bind to 127.0.0.1)\n")


def test_agent_add_list_remove_from_the_command_line(tmp_path: Path) -> None:
    def business(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "client.business.main", "--home",
                               str(tmp_path / "inbox"), "agent", *args], cwd=ROOT, input=stdin,
                              capture_output=True, text=True, timeout=60)

    added = business("add", "ann", stdin=PASSWORD + "\n")
    assert (added.returncode, added.stdout) == (0, "agent ann can log in\n")
    assert business("add", "bob", stdin="short\n").returncode == 1
    assert business("add", "Bad Name", stdin=PASSWORD + "\n").returncode == 1
    assert business("list").stdout == "ann\n"
    store = InboxStore(tmp_path / "inbox")
    stored = store.password_hash("ann")
    store.close()
    assert stored is not None and password_matches(stored, PASSWORD)
    assert PASSWORD.encode() not in (tmp_path / "inbox" / "inbox.db").read_bytes()
    assert business("remove", "ann").stdout == "removed agent ann\n"
    missing = business("remove", "ann")
    assert (missing.returncode, missing.stderr) == (1, "e2e-business: no agent named 'ann'\n")


async def test_secure_cookies_with_tls(tmp_path: Path, nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    store = InboxStore(tmp_path / "inbox")
    store.set_agent("ann", hash_password(PASSWORD, FAST_PASSWORD), 0.0)
    app = build_app(store, {}, Changes(), InboxConfig(secure_cookies=True))
    port = await nursery.start(serve_http, app,
                               hypercorn_config("127.0.0.1", 0, str(cert), str(key)))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def over_tls(method: str, path: str, body: str | None = None,
                 cookie: str = "") -> http.client.HTTPResponse:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        headers = {"Cookie": cookie} if cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response

    form = await trio.to_thread.run_sync(over_tls, "GET", "/login")
    login_cookie = form.getheader("set-cookie")
    assert login_cookie.startswith("__Host-inbox_login=") and "Secure" in login_cookie
    token = login_cookie.split(";")[0].split("=", 1)[1]
    done = await trio.to_thread.run_sync(
        over_tls, "POST", "/login", urlencode({"csrf": token, "name": "ann",
                                               "password": PASSWORD}),
        f"__Host-inbox_login={token}")
    assert done.status == 303
    session_cookie = next(value for name, value in done.getheaders()
                          if name.lower() == "set-cookie" and "__Host-inbox_session=" in value)
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag in session_cookie
    # The cookie without the prefix, as plain HTTP would name it, opens nothing.
    plain = session_cookie.split(";")[0].replace("__Host-", "")
    assert (await trio.to_thread.run_sync(over_tls, "GET", "/analytics.json", None,
                                          plain)).status == 401
    assert (await trio.to_thread.run_sync(over_tls, "GET", "/analytics.json", None,
                                          session_cookie.split(";")[0])).status == 200
    nursery.cancel_scope.cancel()
    store.close()

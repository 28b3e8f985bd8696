"""Limits and hostile input on the social server: prekey draining, integer and text fields
that SQLite cannot take, and frames that never complete (slow loris)."""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.core.connection import Connection, ServerError
from e2e_proto import social_api as api
from e2e_proto.blob_api import BLOB_CHUNK_SIZE
from e2e_proto.wire import encode_frame
from server.social.config import SocialConfig
from server.social.server import SocialServer
from server.social.sqlite_store import SqliteSocialStore, fts_query
from tests.fault_support import answers_to_a_stalled_frame, answers_to_a_trickled_frame
from tests.server_harness import connect
from tests.social_harness import (
    FAST,
    PASSWORD,
    make_client,
    raw,
    raw_register,
    register,
    start_social,
)


def _config(**changes: Any) -> SocialConfig:
    return SocialConfig(password_opslimit=FAST.password_opslimit,
                        password_memlimit=FAST.password_memlimit, **changes)


async def _refused(connection: Connection, code: str, kind: str, **fields: Any) -> None:
    with pytest.raises(ServerError) as refused:
        await connection.request(kind, **fields)
    assert refused.value.code == code, refused.value


def _one_time_prekeys(store: SqliteSocialStore, account: str) -> int:
    return int(store._db.execute("SELECT COUNT(*) FROM one_time_prekeys WHERE account = ?",
                                 (account,)).fetchone()[0])


async def test_fetch_bundles_needs_distinct_device_ids_and_is_rate_limited(
        nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db",
                                _config(bundles_per_minute=0.001, bundle_burst=5))
    await register(make_client(tmp_path / "bob", social.port), "bob")  # publishes 40 OPKs
    opks = _one_time_prekeys(social.store, "bob")
    assert opks == 40
    mallory = (await raw_register(social.port, "mallory"))["token"]
    async with raw(social.port) as c:
        await c.request("auth", token=mallory)
        for bad in ([0] * 500, [0, 0], [True], [-1], [2**32], [2**63], [1.0], [0.0], ["0"], 0):
            await _refused(c, api.BAD_REQUEST, "fetch_bundles", account="bob", device_ids=bad)
        assert _one_time_prekeys(social.store, "bob") == opks  # nothing handed out
        for _ in range(5):
            (bundle,) = (await c.request("fetch_bundles", account="bob",
                                         device_ids=[0]))["bundles"]
            assert bundle[0] == 0 and bundle[5] is not None
        await _refused(c, api.RATE_LIMITED, "fetch_bundles", account="bob", device_ids=[0])
        await _refused(c, api.RATE_LIMITED, "fetch_bundles", account="bob")
    async with raw(social.port) as c:  # the limit is the account's, not the connection's
        await c.request("auth", token=mallory)
        await _refused(c, api.RATE_LIMITED, "fetch_bundles", account="bob")
    assert _one_time_prekeys(social.store, "bob") == opks - 5
    carol = (await raw_register(social.port, "carol"))["token"]
    async with raw(social.port) as c:  # another account has its own bucket
        await c.request("auth", token=carol)
        assert len((await c.request("fetch_bundles", account="bob"))["bundles"]) == 1


async def test_fetch_bundles_that_fails_hands_out_nothing(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    bob = make_client(tmp_path / "bob", social.port)
    await register(bob, "bob")
    bob1 = (await raw_register(social.port, "bob1"))["token"]
    async with raw(social.port) as c:  # an account whose second device has no signed prekey
        await c.request("auth", token=bob1)
    async with raw(social.port) as c:
        response = await c.request("login", account="bob", password="correct horse battery "
                                   "staple")
        await c.request("publish_prekeys", identity_key=b"\x07" * 32)
        assert response["device_id"] == 1
    opks = _one_time_prekeys(social.store, "bob")
    async with raw(social.port) as c:
        await c.request("auth", token=bob1)
        await _refused(c, api.NO_PREKEYS, "fetch_bundles", account="bob")
        await _refused(c, api.NO_PREKEYS, "fetch_bundles", account="bob", device_ids=[0, 1])
        assert len((await c.request("fetch_bundles", account="bob",
                                    device_ids=[0]))["bundles"]) == 1
    assert _one_time_prekeys(social.store, "bob") == opks - 1


async def test_integers_sqlite_cannot_take_are_bad_requests(
        nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    social = await start_social(nursery, tmp_path / "social.db")
    alice = (await raw_register(social.port, "alice"))["token"]
    await raw_register(social.port, "bob")
    async with raw(social.port) as c:
        await c.request("auth", token=alice)
        message = (await c.request("send", conversation="bob", text="hi"))["message"]
        for bad in (2**63, 2**64 - 1, -2**63, -1, 0, True, 1.5, "1", None):
            await _refused(c, api.BAD_REQUEST, "ack", seq=bad)
            await _refused(c, api.BAD_REQUEST, "pin", message=bad)
            await _refused(c, api.BAD_REQUEST, "history", conversation="bob", limit=bad)
            await _refused(c, api.BAD_REQUEST, "search", text="hi", limit=bad)
            if bad is not None:  # no 'before' is the newest page
                await _refused(c, api.BAD_REQUEST, "history", conversation="bob", before=bad)
        await _refused(c, api.BAD_REQUEST, "ack", seq=list(range(1, 1000)))  # one seq, no list
        await c.request("ack", seq=2**63 - 1)  # the largest seq: the cursor stops at the log
        await c.request("ping")  # the connection is still open
        assert (await c.request("history", conversation="bob"))["messages"][0]["id"] == message
    assert "internal error" not in caplog.text


async def test_search_takes_any_text(nursery, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    social = await start_social(nursery, tmp_path / "social.db")
    alice = (await raw_register(social.port, "alice"))["token"]
    await raw_register(social.port, "bob")
    async with raw(social.port) as c:
        await c.request("auth", token=alice)
        sent = (await c.request("send", conversation="bob",
                                text='say "NEAR" OR * to me'))["message"]
        for bad in ("\x00", "a\x00b", "say\x00"):
            await _refused(c, api.BAD_REQUEST, "search", text=bad)
        # FTS5 operators are plain words: NEAR(...) would match, OR would match either word.
        for text, found in (('"near"', [sent]), ("NEAR(say me)", []), ("*", []),
                            ("say OR", [sent]), ("say OR dinner", []), ("-say", [sent]),
                            ("^say", [sent]), ('"', []), ("{say}: me", [sent]), ("\x01", [])):
            messages = (await c.request("search", text=text))["messages"]
            assert [m["id"] for m in messages] == found, text
        await c.request("ping")
    assert "internal error" not in caplog.text


async def test_a_query_the_index_refuses_is_a_bad_request(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice = (await raw_register(social.port, "alice"))["token"]

    def refuse(account: str, query: str, limit: int) -> list[Any]:
        raise sqlite3.OperationalError("fts5: syntax error")

    social.store.search = refuse  # type: ignore[method-assign]
    async with raw(social.port) as c:
        await c.request("auth", token=alice)
        await _refused(c, api.BAD_REQUEST, "search", text="anything")
        await c.request("ping")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=60))
def test_the_store_searches_any_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteSocialStore(Path(folder) / "social.db")
        try:
            store.create_account("alice", b"hash", 0.0)
            store.create_account("bob", b"hash", 0.0)
            conversation = store.direct("alice", "bob", create=True)
            assert conversation.id is not None
            store.add_message(conversation.id, "alice", 0, 1, "plain words here", [])
            found = store.search("alice", text, 10)  # never raises, whatever the text
            assert all(m.text == "plain words here" for m in found)
            assert "\x00" not in fts_query(text)
        finally:
            store.close()


async def test_slow_loris_frame_times_out(nursery, tmp_path: Path, autojump_clock) -> None:
    assert SocialConfig().frame_timeout == 30.0
    social = await start_social(nursery, tmp_path / "social.db", _config(frame_timeout=10))
    frames, took = await answers_to_a_stalled_frame(social.port)
    assert frames[-1]["error"]["message"] == "a frame did not complete in time"
    assert 10 <= took < 30  # the frame timeout, not the login timeout


async def test_a_trickled_frame_has_one_deadline_from_its_first_byte(
        tmp_path: Path, autojump_clock) -> None:
    """One byte every 10 s does not keep a frame alive past the 30 s frame timeout."""
    store = SqliteSocialStore(tmp_path / "social.db")
    try:
        frames, took = await answers_to_a_trickled_frame(
            SocialServer(store, _config(auth_timeout=10_000)), interval=10)
    finally:
        store.close()
    assert frames[-1]["error"]["message"] == "a frame did not complete in time"
    assert 30 <= took <= 31


async def test_resend_with_the_same_client_id_is_one_message(nursery, tmp_path) -> None:
    """A send repeated after a lost answer (same client_id) is stored once."""
    social = await start_social(nursery, tmp_path / "social.db")
    alice, bob = make_client(tmp_path / "alice", social.port), make_client(
        tmp_path / "bob", social.port)
    await register(alice, "alice")
    await register(bob, "bob")
    async with alice.session() as session:
        first = await session.send_text("bob", "only once", b"k" * 16)
        again = await session.send_text("bob", "only once", b"k" * 16)
        other = await session.send_text("bob", "only once", b"j" * 16)
        history, _ = await session.history("bob")
    assert first == again != other
    assert [m.id for m in history] == [first, other]


async def test_connections_waiting_to_log_in_are_capped_and_send_small_frames(
        nursery, tmp_path: Path, autojump_clock) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    server = SocialServer(store, _config(  # no login deadline: hashing runs in a thread, and
        max_unauthenticated_connections=3,  # the virtual clock jumps while it does
        max_unauthenticated_per_address=2, auth_timeout=math.inf))
    limit = server.config.max_unauthenticated_frame_size
    assert limit == api.MAX_UNAUTHENTICATED_REQUEST_SIZE < server.config.max_frame_size
    first = [await connect(nursery, server, f"198.51.100.1:{port}") for port in (1, 2)]
    for peer in first:
        assert (await peer.request("ping"))["ok"]
    refused = await connect(nursery, server, "198.51.100.1:3")  # a third from one address
    (refusal,) = await refused.read()
    assert refusal["error"]["code"] == api.TOO_MANY_CONNECTIONS and refused.closed
    other = await connect(nursery, server, "[2001:db8::1]:1")
    assert (await other.request("ping"))["ok"]
    refused = await connect(nursery, server, "198.51.100.2:1")  # three wait: the server is full
    (refusal,) = await refused.read()
    assert refusal["error"]["code"] == api.TOO_MANY_CONNECTIONS and refused.closed
    largest = {"account": "a" * 64, "password": "\U0001f600" * (api.MAX_PASSWORD_BYTES // 4)}
    assert len(encode_frame({"id": 2**64 - 1, "type": "register", **largest})) - 4 <= limit
    assert (await first[0].request("register", **largest))["ok"]  # the largest fits; logged in
    assert (await first[0].request("ping", pad=bytes(100_000)))["ok"]  # large frames now
    again = await connect(nursery, server, "198.51.100.2:2")  # its place was given back
    assert (await again.request("ping"))["ok"]
    await first[1].stream.send_all(encode_frame(
        {"id": 1, "type": "login", "account": "a" * 64, "password": "x" * limit}))
    (refusal,) = await first[1].read()
    assert refusal["error"]["code"] == api.FRAME_TOO_LARGE and first[1].closed
    assert "before authentication" in refusal["error"]["message"]
    store.close()


async def test_a_whole_upload_chunk_passes_only_after_login(
        nursery, tmp_path: Path, autojump_clock) -> None:
    """A 1 MiB upload_chunk frame is refused before login (small frames) and stored after."""
    store = SqliteSocialStore(tmp_path / "social.db")
    server = SocialServer(store, _config(auth_timeout=math.inf))  # hashing runs in a thread
    data = secrets.token_bytes(BLOB_CHUNK_SIZE)
    blob_id = hashlib.sha256(data).digest()
    chunk = {"blob_id": blob_id, "offset": 0, "data": data}
    early = await connect(nursery, server, "198.51.100.7:1")
    await early.stream.send_all(encode_frame({"id": 1, "type": "upload_chunk", **chunk}))
    (refusal,) = await early.read()
    assert refusal["error"]["code"] == api.FRAME_TOO_LARGE and early.closed
    peer = await connect(nursery, server, "198.51.100.7:2")
    assert (await peer.request("register", account="alice", password=PASSWORD))["ok"]
    assert (await peer.request("upload_begin", blob_id=blob_id, size=len(data)))["ok"]
    assert (await peer.request("upload_chunk", **chunk))["offset"] == len(data)
    assert (await peer.request("upload_finish", blob_id=blob_id))["size"] == len(data)
    store.close()


async def test_one_account_cannot_drain_a_device(nursery, tmp_path: Path, mock_clock) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    config = social.server.config
    await register(make_client(tmp_path / "bob", social.port), "bob")  # publishes 40 OPKs
    mallory = (await raw_register(social.port, "mallory"))["token"]
    async with raw(social.port) as c:
        await c.request("auth", token=mallory)
        for _ in range(config.bundle_burst_per_target):
            await c.request("fetch_bundles", account="bob")
        with pytest.raises(ServerError) as refused:
            await c.request("fetch_bundles", account="bob")
        assert refused.value.code == api.RATE_LIMITED and "bob.0" in str(refused.value)
        wait = refused.value.details["retry_after"]
        assert wait == 3600 / config.bundles_per_target_per_hour
        mock_clock.jump(wait)
        await c.request("fetch_bundles", account="bob")  # one more, an hour later
    assert _one_time_prekeys(social.store, "bob") == 40 - 11


async def test_many_accounts_take_at_most_a_devices_one_time_prekey_budget(
        nursery, tmp_path: Path, mock_clock) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    budget = social.server.config.one_time_prekey_burst
    await register(make_client(tmp_path / "bob", social.port), "bob")  # publishes 40 OPKs
    with_opk = 0
    for index in range(3):
        token = (await raw_register(social.port, f"mallory{index}"))["token"]
        async with raw(social.port) as c:
            await c.request("auth", token=token)
            for _ in range(10):
                (bundle,) = (await c.request("fetch_bundles", account="bob"))["bundles"]
                assert bundle[2] is not None  # every bundle has the signed prekey
                with_opk += bundle[5] is not None
    assert with_opk == budget  # 30 bundles, of which only the budget carried one-time prekeys
    assert _one_time_prekeys(social.store, "bob") == 40 - budget
    mock_clock.jump(3600)  # the budget refills over an hour
    token = (await raw_register(social.port, "alice"))["token"]
    async with raw(social.port) as c:
        await c.request("auth", token=token)
        (bundle,) = (await c.request("fetch_bundles", account="bob"))["bundles"]
        assert bundle[5] is not None


async def test_registrations_per_source_address(nursery, tmp_path: Path, mock_clock) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    server = SocialServer(store, _config(registration_burst=3, registrations_per_hour=6))

    async def register_from(source: str, account: str) -> dict[str, Any]:
        peer = await connect(nursery, server, f"{source}:1")
        answer = await peer.request("register", account=account, password=PASSWORD)
        await peer.close()
        return answer

    for index in range(3):
        assert (await register_from("203.0.113.1", f"user{index}"))["ok"]
        if index == 0:
            taken = await register_from("203.0.113.1", "user0")  # a taken name costs nothing
            assert taken["error"]["code"] == api.NAME_TAKEN
    refused = (await register_from("203.0.113.1", "one-more"))["error"]
    assert refused["code"] == api.RATE_LIMITED and refused["retry_after"] == 600
    assert not store.account_exists("one-more")
    assert (await register_from("2001:db8::1", "elsewhere"))["ok"]  # another address
    mock_clock.jump(600)
    assert (await register_from("203.0.113.1", "one-more"))["ok"]
    store.close()


async def test_password_guessing_backs_off_without_locking_the_owner_out(
        nursery, tmp_path: Path, mock_clock) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    server = SocialServer(store, _config())
    config = server.config

    async def login(source: str, password: str, account: str = "alice") -> dict[str, Any]:
        peer = await connect(nursery, server, f"{source}:1")
        answer = await peer.request("login", account=account, password=password)
        await peer.close()
        return answer

    peer = await connect(nursery, server, "192.0.2.1:1")
    assert (await peer.request("register", account="alice", password=PASSWORD))["ok"]
    await peer.close()
    for _ in range(config.pair_login_failure_burst):  # the attacker at one address
        assert (await login("203.0.113.66", "guess"))["error"]["code"] == api.AUTH_FAILED
    refused = (await login("203.0.113.66", PASSWORD))["error"]  # even the right password
    assert refused["code"] == api.RATE_LIMITED
    assert refused["retry_after"] == 3600 / config.pair_login_failures_per_hour
    assert f"try again in {refused['retry_after']} s" in refused["message"]
    for _ in range(3 * config.account_login_failure_burst):  # the owner is not locked out
        assert (await login("198.51.100.7", PASSWORD))["ok"]
    for _ in range(10):  # the attacker gets one guess each time it may, for hours
        mock_clock.jump(refused["retry_after"])
        assert (await login("203.0.113.66", "guess"))["error"]["code"] == api.AUTH_FAILED
        assert (await login("203.0.113.66", "guess"))["error"]["code"] == api.RATE_LIMITED
        assert (await login("198.51.100.7", PASSWORD))["ok"]  # and the owner never waits
    mock_clock.jump(3600)
    for source in range(10):  # attackers at many addresses exhaust the account's guesses...
        for _ in range(config.pair_login_failure_burst):
            await login(f"203.0.113.{source}", "guess")
    refused = (await login("198.51.100.7", PASSWORD))["error"]
    assert refused["code"] == api.RATE_LIMITED
    assert 0 < refused["retry_after"] <= 3600 / config.account_login_failures_per_hour
    mock_clock.jump(refused["retry_after"])  # ...for the next token at most
    assert (await login("198.51.100.7", PASSWORD))["ok"]
    mock_clock.jump(3600)
    for index in range(config.address_login_failure_burst):  # guessing many accounts
        assert (await login("203.0.113.99", "guess", f"name{index}"))["error"]["code"] == (
            api.AUTH_FAILED)
    refused = (await login("203.0.113.99", "guess", "another"))["error"]
    assert refused["code"] == api.RATE_LIMITED and "this address" in refused["message"]
    store.close()


def test_one_address_may_not_fail_as_often_as_an_account(tmp_path: Path) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    try:
        with pytest.raises(ValueError, match="lock the owner out"):
            SocialServer(store, _config(pair_login_failure_burst=20))
    finally:
        store.close()

"""Bad input to the social server: a clear error code, nothing stored, the connection usable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from client.core.connection import Connection, ServerError
from client.core.errors import ClientError
from e2e_proto import social_api as api
from e2e_proto.wire import encode_frame
from server.social.config import SocialConfig
from tests.social_harness import (
    FAST,
    PASSWORD,
    login,
    make_client,
    raw,
    raw_register,
    register,
    session_of,
    start_social,
)


async def _refused(connection: Connection, code: str, kind: str, **fields: Any) -> None:
    with pytest.raises(ServerError) as refused:
        await connection.request(kind, **fields)
    assert refused.value.code == code, refused.value
    assert str(refused.value)  # a message for the user, not just a code


def _counts(store: Any) -> tuple[int, ...]:
    db = store._db
    return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in
                 ("messages", "message_text", "envelopes", "reactions", "pins", "events"))


async def _alice_and_bob(port: int) -> tuple[bytes, bytes]:
    return ((await raw_register(port, "alice"))["token"],
            (await raw_register(port, "bob"))["token"])


async def test_oversized_messages_and_invalid_reactions(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice_token, _ = await _alice_and_bob(social.port)
    async with raw(social.port) as c:
        await c.request("auth", token=alice_token)
        message = (await c.request("send", conversation="bob", text="react to me"))["message"]
        before = _counts(social.store)
        await _refused(c, api.MESSAGE_TOO_LARGE, "send", conversation="bob",
                       text="x" * (api.MAX_TEXT_BYTES + 1))
        await _refused(c, api.MESSAGE_TOO_LARGE, "send", conversation="bob",
                       text="é" * (api.MAX_TEXT_BYTES // 2 + 1))  # bytes, not characters
        await _refused(c, api.BAD_REQUEST, "send", conversation="bob", text="")
        for bad in ("👍👍", "a", "", "👍 ", ":+1:", "\u200d", "🇫", "x" * 100):
            await _refused(c, api.INVALID_REACTION, "react", message=message, emoji=bad)
        await _refused(c, api.INVALID_REACTION, "react", message=message, emoji=None)
        await _refused(c, api.UNKNOWN_MESSAGE, "react", message=message + 1000, emoji="👍")
        await _refused(c, api.UNKNOWN_MESSAGE, "pin", message=message + 1000)
        await _refused(c, api.BAD_REQUEST, "pin", message="1")
        assert _counts(social.store) == before
        for good in ("👍", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "1️⃣", "❤️"):
            assert (await c.request("react", message=message, emoji=good))["changed"]
        assert (await c.request("history", conversation="bob"))["messages"][0]["reactions"] \
            == [["alice", "❤️"]]
    client = make_client(tmp_path / "alice2", social.port)
    await login(client, "alice")
    async with session_of(client) as session:
        with pytest.raises(ClientError, match="exactly one emoji"):
            await session.react(message, "👍👍")
        with pytest.raises(ClientError, match="message too large"):
            await session.send_text("bob", "x" * (api.MAX_TEXT_BYTES + 1))


async def test_bad_tokens_expired_tokens_and_wrong_passwords(nursery, tmp_path: Path) -> None:
    now = [1_000_000.0]
    config = SocialConfig(password_opslimit=FAST.password_opslimit,
                          password_memlimit=FAST.password_memlimit, token_ttl=3600.0)
    social = await start_social(nursery, tmp_path / "social.db", config, clock=lambda: now[0])
    alice_token, _ = await _alice_and_bob(social.port)
    async with raw(social.port) as c:
        await _refused(c, api.NOT_AUTHENTICATED, "send", conversation="bob", text="hi")
        await _refused(c, api.BAD_TOKEN, "auth", token=bytes(32))
        await _refused(c, api.BAD_TOKEN, "auth", token=b"short")
        await _refused(c, api.AUTH_FAILED, "login", account="alice", password="wrong password")
        await _refused(c, api.AUTH_FAILED, "login", account="nobody", password=PASSWORD)
        await _refused(c, api.NAME_TAKEN, "register", account="alice", password=PASSWORD)
        await _refused(c, api.WEAK_PASSWORD, "register", account="carol", password="short")
        await _refused(c, api.BAD_REQUEST, "register", account="Not A Name",
                       password=PASSWORD)
        await _refused(c, api.UNSUPPORTED, "frobnicate")
        assert not social.store.account_exists("carol")
        await c.request("auth", token=alice_token)
        await c.request("ping")
    now[0] += 3601.0
    async with raw(social.port) as c:
        await _refused(c, api.TOKEN_EXPIRED, "auth", token=alice_token)
    client = make_client(tmp_path / "alice", social.port)
    client.state.set("account", "alice")
    client.state.set("token", alice_token)
    with pytest.raises(ClientError, match="expired.*login alice"):
        async with session_of(client):
            pass
    assert await login(client, "alice") == 1  # logging in again gives a fresh token
    async with session_of(client) as session:
        assert await session.send_text("bob", "back again") > 0
    with pytest.raises(ClientError, match="auth_failed"):
        await login(make_client(tmp_path / "mallory", social.port), "alice", "guessing")


async def test_unknown_conversations_and_non_members(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice_token, _ = await _alice_and_bob(social.port)
    carol_token = (await raw_register(social.port, "carol"))["token"]
    async with raw(social.port) as c:
        await c.request("auth", token=alice_token)
        direct = (await c.request("send", conversation="bob", text="only for bob"))["message"]
        await c.request("group_create", name="pair", members=["bob"])
        in_group = (await c.request("send", conversation="pair", text="group talk"))["message"]
        await _refused(c, api.UNKNOWN_CONVERSATION, "send", conversation="nobody", text="hi")
        await _refused(c, api.UNKNOWN_CONVERSATION, "history", conversation="nobody")
        await _refused(c, api.UNKNOWN_ACCOUNT, "group_create", name="g2", members=["ghost"])
        await _refused(c, api.NAME_TAKEN, "group_create", name="bob", members=[])
        await _refused(c, api.NAME_TAKEN, "group_create", name="pair", members=[])
        await _refused(c, api.NOT_SECRET, "send", conversation="bob", envelopes=[b"x"])
    before = _counts(social.store)
    async with raw(social.port) as c:
        await c.request("auth", token=carol_token)
        for kind, fields in (("send", {"conversation": "pair", "text": "let me in"}),
                             ("history", {"conversation": "pair"}),
                             ("pins", {"conversation": "pair"}),
                             ("group_add", {"conversation": "pair", "members": ["carol"]})):
            await _refused(c, api.NOT_MEMBER, kind, **fields)
        for message in (direct, in_group):
            await _refused(c, api.NOT_MEMBER, "react", message=message, emoji="👍")
            await _refused(c, api.NOT_MEMBER, "pin", message=message)
            await _refused(c, api.NOT_MEMBER, "unreact", message=message)
        assert (await c.request("search", text="only"))["messages"] == []
        assert (await c.request("history", conversation="alice"))["messages"] == []
    assert _counts(social.store) == before
    client = make_client(tmp_path / "carol", social.port)
    await login(client, "carol")
    async with session_of(client) as session:
        with pytest.raises(ClientError, match="not_member"):
            await session.send_text("pair", "let me in")
        with pytest.raises(ClientError, match="unknown_conversation"):
            await session.history("nobody")
        with pytest.raises(ClientError, match="invalid name"):
            await session.history("../etc")


async def test_secret_conversation_refusals(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    alice = make_client(tmp_path / "alice", social.port)
    await register(alice, "alice")
    await register(make_client(tmp_path / "bob", social.port), "bob")
    async with session_of(alice) as a:
        await a.make_secret("bob")
        await a.group_create("club", ["bob"])
        with pytest.raises(ClientError, match="one to one"):
            await a.make_secret("club")
        before = _counts(social.store)
        c = a.connection
        await _refused(c, api.SECRET_CONVERSATION, "send", conversation="bob", text="plain")
        await _refused(c, api.DEVICE_MISMATCH, "send", conversation="bob", envelopes=[])
        await _refused(c, api.BAD_REQUEST, "send", conversation="bob", envelopes=[b"junk"])
        await _refused(c, api.UNSUPPORTED, "secret", conversation="club")
        assert _counts(social.store) == before


async def test_malformed_frames_close_only_that_connection(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    async with raw(social.port) as c:
        await c.stream.send_all(b"\x00\x00\x00\x02\x91\x01")  # a frame that is not a map
        frame = await c.pushes.receive()
        assert frame["type"] == "error" and frame["code"] == api.BAD_REQUEST
    async with raw(social.port) as c:
        await c.stream.send_all(b"\xff\xff\xff\xff")  # far over the frame limit
        frame = await c.pushes.receive()
        assert frame["code"] == api.FRAME_TOO_LARGE
    async with raw(social.port) as c:
        await c.stream.send_all(encode_frame({"type": "ping"}))  # no id
        frame = await c.pushes.receive()
        assert frame["code"] == api.BAD_REQUEST
        await c.request("ping")  # still open
    await raw_register(social.port, "alice")  # and the server serves on


async def test_a_request_type_cannot_forge_log_lines(nursery, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    social = await start_social(nursery, tmp_path / "social.db")
    forged = "ping\n2030-01-01 00:00:00 e2e.social connection from 6.6.6.6 logged in as root"
    async with raw(social.port) as c:
        await _refused(c, api.UNSUPPORTED, forged)
        await c.request("ping")
    messages = [record.getMessage() for record in caplog.records]
    assert any("refused: unsupported" in m for m in messages)
    assert not any("\n" in m or "\r" in m for m in messages)
    assert "logged in as root" not in caplog.text


async def test_a_request_type_that_is_not_a_string_is_refused(
        nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    token = (await raw_register(social.port, "alice"))["token"]
    async with raw(social.port) as c:
        for kind in (["login"], {"login": 1}, [], {}, b"login", 1.5):
            await _refused(c, api.BAD_REQUEST, kind, account="alice")  # type: ignore[arg-type]
        await c.request("auth", token=token)
        for kind in (["ping"], {"ping": 1}):
            await _refused(c, api.BAD_REQUEST, kind)  # type: ignore[arg-type]
        await c.request("ping")  # the connection survives
    assert "internal error" not in caplog.text

"""An account's devices at the social server: logout, the device list and revoking another
device (issue 11), with raw frames."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from client.core.connection import Connection, ConnectionLost, ServerError
from e2e_proto import social_api as api
from server.social.sqlite_store import SqliteSocialStore
from tests.social_harness import PASSWORD, raw, raw_register, start_social


async def _refused(connection: Connection, code: str, kind: str, **fields: object) -> str:
    with pytest.raises(ServerError) as refused:
        await connection.request(kind, **fields)
    assert refused.value.code == code, refused.value
    return str(refused.value)


async def _pushes_until_closed(connection: Connection) -> list[dict[str, object]]:
    """Every push until the server closes ``connection`` (which it must, within 5 s)."""
    with trio.fail_after(5):
        return [frame async for frame in connection.pushes if frame["type"] != "queue_empty"]


async def _closed_with(connection: Connection) -> dict[str, object]:
    """The error frame the server pushed before it closed ``connection`` (nothing else)."""
    (error,) = await _pushes_until_closed(connection)
    assert error["type"] == "error", error
    return error


async def _login(port: int, account: str = "alice") -> bytes:
    async with raw(port) as connection:
        return (await connection.request("login", account=account, password=PASSWORD))["token"]


async def test_logout_revokes_this_devices_token_and_ends_its_connections(
        nursery, tmp_path: Path) -> None:
    now = [1_000_000.0]
    social = await start_social(nursery, tmp_path / "social.db", clock=lambda: now[0])
    first = (await raw_register(social.port, "alice"))["token"]
    second = await _login(social.port)
    async with raw(social.port) as other, raw(social.port) as c:
        await other.request("auth", token=first)  # another connection of the same device
        await c.request("auth", token=first)
        assert await c.request("logout") == {"id": 2, "ok": True}
        assert await _pushes_until_closed(c) == []  # then the server closes the connection
        with pytest.raises(ConnectionLost):
            await c.request("ping")
        farewell = await _closed_with(other)
        assert farewell["code"] == api.BAD_TOKEN and "logged out" in str(farewell["message"])
    async with raw(social.port) as c:
        await _refused(c, api.BAD_TOKEN, "auth", token=first)
        await c.request("auth", token=second)  # the account's other device is still logged in
        assert [d["device_id"] for d in (await c.request("devices"))["devices"]] == [1]
        assert (await c.request("get_devices", account="alice"))["devices"] == [[1, None]]


async def test_devices_lists_the_accounts_own_devices(nursery, tmp_path: Path) -> None:
    now = [1_000_000.0]
    social = await start_social(nursery, tmp_path / "social.db", clock=lambda: now[0])
    first = (await raw_register(social.port, "alice"))["token"]
    await raw_register(social.port, "bob")
    now[0] += 60
    await _login(social.port)
    now[0] += 60
    async with raw(social.port) as c:
        await c.request("auth", token=first)
        devices = (await c.request("devices"))["devices"]
    ttl = social.server.config.token_ttl
    assert devices == [
        {"device_id": 0, "created": 1_000_000.0, "last_seen": 1_000_120.0,
         "expires": 1_000_000.0 + ttl, "current": True},
        {"device_id": 1, "created": 1_000_060.0, "last_seen": 1_000_060.0,
         "expires": 1_000_060.0 + ttl, "current": False}]  # bob's device is not listed


async def test_revoke_device_ends_the_other_devices_session(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    first = (await raw_register(social.port, "alice"))["token"]
    bob = (await raw_register(social.port, "bob"))["token"]
    second = await _login(social.port)
    async with raw(social.port) as victim, raw(social.port) as c, raw(social.port) as b:
        await victim.request("auth", token=first)
        await victim.request("publish_prekeys", identity_key=bytes(range(32)))
        await c.request("auth", token=second)
        await b.request("auth", token=bob)
        for unknown in (7, 2**32, -1, "0"):
            await _refused(c, api.UNKNOWN_DEVICE if unknown == 7 else api.BAD_REQUEST,
                           "revoke_device", device_id=unknown)
        assert (await c.request("revoke_device", device_id=0))["device_id"] == 0
        farewell = await _closed_with(victim)
        assert farewell["code"] == api.BAD_TOKEN and "revoked" in str(farewell["message"])
        await b.request("send", conversation="alice", text="after the revocation")
        assert [d["device_id"] for d in (await c.request("devices"))["devices"]] == [1]
        assert (await b.request("get_devices", account="alice"))["devices"] == [[1, None]]
        await _refused(c, api.UNKNOWN_DEVICE, "revoke_device", device_id=0)  # gone already
    async with raw(social.port) as c:
        await _refused(c, api.BAD_TOKEN, "auth", token=first)
    async with raw(social.port) as c:  # revoking the current device is logging out
        await c.request("auth", token=second)
        assert (await c.request("revoke_device", device_id=1))["device_id"] == 1
        pushes = await _pushes_until_closed(c)  # then the server closes the connection
        assert all(push["type"] == "event" for push in pushes)  # bob's message, from before
    async with raw(social.port) as c:
        await _refused(c, api.BAD_TOKEN, "auth", token=second)
        await c.request("login", account="alice", password=PASSWORD)  # the password still works


def test_an_older_social_database_gets_device_times(tmp_path: Path) -> None:
    store = SqliteSocialStore(tmp_path / "social.db")
    store.create_account("alice", b"hash", 0.0)
    store.add_device("alice", b"t" * 32, 100.0, now=5.0)
    store.close()
    db = sqlite3.connect(tmp_path / "social.db")
    db.executescript("ALTER TABLE devices DROP COLUMN created; "
                     "ALTER TABLE devices DROP COLUMN last_seen;")
    db.close()
    store = SqliteSocialStore(tmp_path / "social.db")
    (device,) = store.device_info("alice")
    assert (device.device_id, device.created, device.last_seen) == (0, None, None)
    store.close()

"""Social groups: remove, leave and rename (the server's own groups, up to 250 members)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.core.errors import ClientError
from tests.social_harness import make_client, register, session_of, start_social


async def test_remove_leave_rename(nursery, tmp_path: Path) -> None:
    social = await start_social(nursery, tmp_path / "social.db")
    clients = {}
    for name in ("alice", "bob", "carol"):
        clients[name] = make_client(tmp_path / name, social.port)
        await register(clients[name], name)
    async with session_of(clients["alice"]) as a:
        await a.group_create("friends", ["bob", "carol"])
        info = await a.group_remove("friends", "carol")
        assert info["members"] == ["alice", "bob"]
        with pytest.raises(ClientError, match="not_member"):
            await a.group_remove("friends", "carol")
        with pytest.raises(ClientError, match="name_taken"):
            await a.group_rename("friends", "bob")
        assert (await a.group_rename("friends", "pals"))["conversation"] == "pals"
    async with session_of(clients["carol"]) as c:
        with pytest.raises(ClientError):  # no longer a member: cannot send or see it
            await c.send_text("pals", "let me back in")
    async with session_of(clients["bob"]) as b:
        assert (await b.group_leave("pals"))["members"] == ["alice"]
        with pytest.raises(ClientError, match="not_member"):
            await b.send_text("pals", "gone")
    async with session_of(clients["alice"]) as a:
        assert (await a.conversation("pals"))["members"] == ["alice"]

"""Files on the social transport, end to end: in a plaintext conversation (the server can read
the key, and only the key), in a secret one (it sees nothing but ciphertext), in a group, on
the sender's other devices, and a retried download."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from client.core.errors import ClientError
from tests.fault_support import ROOT
from tests.social_harness import (
    PASSWORD,
    drain,
    login,
    make_client,
    register,
    session_of,
    social_with_alice_and_bob,
    start_social,
)


def _server_files(tmp_path: Path) -> list[Path]:
    """The server's database files and blob files (not the clients' own social.db)."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and (
        (p.parent == tmp_path and p.name.startswith("social.db"))
        or tmp_path / "social-blobs" in p.parents)]


def _canary_file(tmp_path: Path) -> tuple[Path, bytes]:
    canary = ("canary-" + secrets.token_hex(16)).encode()
    source = tmp_path / "letter.txt"
    source.write_bytes(canary + os.urandom(100_000) + canary * 500)
    return source, canary


async def test_plaintext_conversation_file(nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    source, canary = _canary_file(tmp_path)
    async with session_of(alice) as a:
        sent = await a.send_file("bob", source, caption="a letter")
    assert not sent.end_to_end
    events = await drain(bob)
    assert [(e.kind, e.message, e.secret) for e in events] == [("message", sent.message, False)]
    record = events[0].file
    assert record is not None and record.media.caption == "a letter"
    assert Path(record.path or "").read_bytes() == source.read_bytes()
    assert Path(record.path or "") == tmp_path / "bob" / "files" / "letter.txt"
    server_bytes = b"".join(p.read_bytes() for p in _server_files(tmp_path))
    assert sent.file.media.key in server_bytes  # the server can read the key: as documented
    assert canary not in server_bytes  # but it stores only ciphertext
    async with session_of(bob) as b:  # history shows the file too
        messages, _ = await b.history("alice")
    assert [m.text for m in messages] == ["a letter"]


async def test_secret_conversation_file_leaves_no_plaintext_or_key(
        nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    social = await start_social(nursery, tmp_path / "social.db", record=True)
    alice, bob = make_client(tmp_path / "alice", social.port), make_client(
        tmp_path / "bob", social.port)
    await register(alice, "alice")
    await register(bob, "bob")
    await drain(bob)  # bob's device publishes its keys
    source, canary = _canary_file(tmp_path)
    async with session_of(alice) as a:
        await a.make_secret("bob")
        sent = await a.send_file("bob", source, caption=canary.decode())
    assert sent.end_to_end
    events = await drain(bob)
    files = [e.file for e in events if e.file is not None]
    assert len(files) == 1 and Path(files[0].path or "").read_bytes() == source.read_bytes()
    assert files[0].media.caption == canary.decode() and events[-1].secret
    server_files = _server_files(tmp_path)
    assert any(tmp_path / "social-blobs" in p.parents for p in server_files)  # the blob too
    server_bytes = b"".join(p.read_bytes() for p in server_files)
    for secret in (canary, sent.file.media.key, sent.file.media.header):
        assert secret not in server_bytes
        assert secret not in bytes(social.received)
    assert canary.decode() not in caplog.text
    async with session_of(bob) as b:  # history: the text this device kept, not the server's
        messages, _ = await b.history("alice")
    assert messages[-1].text == canary.decode()


async def test_group_file_and_the_senders_other_device(nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    carol, dave = (make_client(tmp_path / n, social.port) for n in ("carol", "dave"))
    await register(carol, "carol")
    await register(dave, "dave")
    laptop = make_client(tmp_path / "alice-laptop", social.port)
    await login(laptop, "alice")
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(70_000))
    async with session_of(alice) as a:
        await a.group_create("club", ["bob", "carol"])
        sent = await a.send_file("club", source)
    for client in (bob, carol, laptop):
        got = [e.file for e in await drain(client) if e.file is not None]
        assert len(got) == 1 and Path(got[0].path or "").read_bytes() == source.read_bytes()
        assert Path(got[0].path or "").name == "plan.pdf"
    async with session_of(dave) as d:  # not a member
        with pytest.raises(Exception, match="unknown_blob|no such file"):
            await d.connection.request("download", blob_id=sent.file.media.blob_id, offset=0)
    assert social.server.blobs.folder.stored() == [sent.file.media.blob_id]  # kept: history


async def test_a_file_from_a_device_not_accepted_is_held(nursery, tmp_path: Path) -> None:
    """A secret file message from a device not accepted is held like a text: a notice, no
    download, fetch-file refused; once the devices are accepted it is shown and saved."""
    social = await start_social(nursery, tmp_path / "social.db")
    alice, bob = make_client(tmp_path / "alice", social.port), make_client(tmp_path / "bob",
                                                                         social.port)
    await register(alice, "alice")
    await register(bob, "bob")
    async with session_of(alice) as a:
        await a.make_secret("bob")
        await a.send_text("bob", "hello")
    await drain(bob)
    added = make_client(tmp_path / "added", social.port)
    assert await login(added, "bob") == 1
    source = tmp_path / "contract.pdf"
    source.write_bytes(os.urandom(30_000))
    async with session_of(added) as n:
        sent = await n.send_file("alice", source, caption="sign here")
    assert sent.end_to_end
    got = await drain(alice)
    assert [e for e in got if e.kind == "message" or e.file is not None] == []
    assert any("held" in (e.warning or "") for e in got)
    async with session_of(alice) as a:
        with pytest.raises(ClientError, match="held"):
            await a.fetch_file(str(sent.message))
        history, _ = await a.history("bob")
        assert history[-1].text == "[held: from a device not accepted yet]"
    files = tmp_path / "alice" / "files"
    assert not files.exists() or list(files.iterdir()) == []
    async with session_of(alice) as a:
        assert await a.accept_devices("bob") == (2, 1)
    shown = [e for e in await drain(alice) if e.kind == "message"]
    assert [(e.message, e.text) for e in shown] == [(sent.message, "sign here")]
    assert shown[0].file is not None
    assert Path(shown[0].file.path or "").read_bytes() == source.read_bytes()


async def test_fetch_file_retries_on_the_social_transport(nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    source = tmp_path / "song.ogg"
    source.write_bytes(os.urandom(5000))
    async with session_of(alice) as a:
        sent = await a.send_file("bob", source)
    stored = social.server.blobs.folder.path(sent.file.media.blob_id)
    stored.rename(stored.with_suffix(".away"))
    record = (await drain(bob))[0].file
    assert record is not None and record.path is None and "unavailable" in (record.error or "")
    assert list((tmp_path / "bob" / "files").iterdir()) == []
    stored.with_suffix(".away").rename(stored)
    async with session_of(bob) as b:
        fetched = await b.fetch_file(str(sent.message))
    assert Path(fetched.path or "").read_bytes() == source.read_bytes()


async def test_cli_says_a_plaintext_file_is_not_end_to_end(nursery, tmp_path: Path) -> None:
    social, _, _ = await social_with_alice_and_bob(nursery, tmp_path)
    source = tmp_path / "photo.png"
    source.write_bytes(os.urandom(1000))

    def chat(home: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client.cli.main", "--transport", "social", "--home",
             str(tmp_path / home), "--social", f"127.0.0.1:{social.port}", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "E2E_PASSWORD": PASSWORD})

    import trio

    done = await trio.to_thread.run_sync(chat, "alice", "send-file", "bob", str(source))
    assert done.returncode == 0, done.stderr
    assert "not end-to-end encrypted" in done.stderr and done.stdout.strip().isdigit()
    got = await trio.to_thread.run_sync(chat, "bob", "recv")
    assert got.returncode == 0, got.stderr
    assert "[file photo.png" in got.stdout and "(not end-to-end encrypted)" in got.stdout
    assert str(tmp_path / "bob" / "files" / "photo.png") in got.stdout

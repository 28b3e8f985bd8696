"""Files on the private transport, end to end: send-file, recv saving into files/, fetch-file,
hostile names, broken blobs from a hostile relay, oversized files, other accounts' blobs, a
resumed upload, the canary, and memory that does not grow with the file."""

from __future__ import annotations

import logging
import os
import secrets
import tracemalloc
from pathlib import Path

import pytest

from client.core.connection import ConnectionLost
from client.core.errors import ClientError
from client.private.received import Received
from e2e_proto import blob_api
from e2e_proto.constants import MAX_MEDIA_SIZE, MEDIA_CHUNK_OVERHEAD, MEDIA_CHUNK_SIZE
from e2e_proto.media import MEDIA_KIND, MediaPayload
from e2e_proto.payload import Payload
from tests.relay_harness import (
    drain,
    make_client,
    register,
    register_under_a_new_key,
    relay_with_alice_and_bob,
    session_of,
)

SEALED_CHUNK = MEDIA_CHUNK_SIZE + MEDIA_CHUNK_OVERHEAD


def _file(folder: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = folder / name
    path.write_bytes(data)
    return path, data


def _everything_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


async def test_send_file_and_receive_it_into_files(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    source, data = _file(tmp_path, "holiday photo.jpg", 2 * 2**20 + 3)
    async with session_of(alice) as a:
        sent = await a.send_file("bob", source, caption="the beach")
    assert sent.file is not None and sent.file.path == str(source.resolve())
    assert not list((tmp_path / "alice" / "outgoing").iterdir())  # the staged blob is gone
    got = await drain(bob)
    assert [(m.kind, m.text, m.sender) for m in got] == [(MEDIA_KIND, "the beach", "alice")]
    record = got[0].file
    assert record is not None and record.error is None
    saved = Path(record.path or "")
    assert saved == tmp_path / "bob" / "files" / "holiday photo.jpg"
    assert saved.read_bytes() == data and saved.stat().st_mode & 0o777 == 0o600
    assert (saved.parent.stat().st_mode & 0o777) == 0o700
    assert record.media.mime == "image/jpeg" and record.media.size == len(data)
    assert record.sha256 == record.media.sha256 and record.sha256 is not None
    assert relay.server.blobs.folder.stored() == []  # every device it was sent to has it
    assert await drain(bob) == []  # shown once
    async with session_of(alice) as a:  # the same name again: a unique name, never replaced
        await a.send_file("bob", source)
    again = (await drain(bob))[0].file
    assert again is not None and Path(again.path or "").name == "holiday photo (1).jpg"
    assert saved.read_bytes() == data


async def test_a_file_under_an_unaccepted_key_change_is_held(nursery, tmp_path: Path) -> None:
    """Like a text: stored, announced by a notice, neither shown nor downloaded (fetch-file
    refuses it) until 'verify --accept'; then shown and saved."""
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    async with session_of(alice) as a:
        await a.send_text("bob", "hi")
    swapped = await register_under_a_new_key(relay, "bob", tmp_path / "bob-new")
    source, data = _file(tmp_path, "invoice.pdf", 70_000)
    async with session_of(swapped) as nb:
        await nb.send_file("alice", source, caption="please pay")
    got = await drain(alice)
    assert [m for m in got if m.warning is None] == []
    assert any("a message from 'bob' is held" in (m.warning or "") for m in got)
    (held,) = [m for m in alice.state.messages("bob") if m.sender == "bob"]
    assert held.kind == MEDIA_KIND
    async with session_of(alice) as a:
        with pytest.raises(ClientError, match="held"):
            await a.fetch_file(held.id.hex())
    files = tmp_path / "alice" / "files"
    assert not files.exists() or list(files.iterdir()) == []
    assert relay.server.blobs.folder.stored() != []  # nobody fetched it yet
    assert alice.state.accept_key("bob") == 1
    shown = await drain(alice)
    assert [(m.kind, m.text, m.sender) for m in shown] == [(MEDIA_KIND, "please pay", "bob")]
    assert shown[0].file is not None
    assert Path(shown[0].file.path or "").read_bytes() == data
    assert relay.server.blobs.folder.stored() == []  # fetched by its one recipient device


def _hostile_payload(media: MediaPayload, name: str, **changes: object) -> Payload:
    fields = {**media.fields(), "name": name, **changes}
    return Payload.new(MEDIA_KIND, 1, secrets.token_bytes, **fields)


async def _upload_and_announce(session: object, source: Path, to: str, name: str,
                               **changes: object) -> MediaPayload:
    """Upload ``source`` as alice's client would, then announce it with a hand-made payload."""
    from client.core.transfer import prepare, send_blob

    state = session.state  # type: ignore[attr-defined]
    outgoing = await prepare(state.files, source, to, secrets.token_bytes)
    await send_blob(session.connection, outgoing, "relay")  # type: ignore[attr-defined]
    media = MediaPayload(outgoing.blob_id, outgoing.key, outgoing.header, outgoing.size,
                         "text/plain", None, None, outgoing.sha256)
    await session.send_payload(  # type: ignore[attr-defined]
        to, _hostile_payload(media, name, **changes), blobs=[outgoing.blob_id])
    return media


@pytest.mark.parametrize("name,expected", [
    ("../../.bashrc", "bashrc"), ("/etc/passwd", "passwd"), ("..", "attachment"),
    ("C:\\Windows\\system32\\evil.dll", "evil.dll"), ("a/../../b\x00c", "bc"),
    ("\u202egnp.exe", "gnp.exe"),
])
async def test_hostile_file_names_stay_inside_files(nursery, tmp_path: Path, name: str,
                                                     expected: str) -> None:
    _, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    source, data = _file(tmp_path, "innocent.txt", 1000)
    before = _everything_under(tmp_path)
    async with session_of(alice) as a:
        await _upload_and_announce(a, source, "bob", name)
    got = await drain(bob)
    record = got[0].file
    assert record is not None and record.media.name == name  # kept as sent, never a path
    saved = Path(record.path or "")
    assert saved == tmp_path / "bob" / "files" / expected and saved.read_bytes() == data
    new = _everything_under(tmp_path) - before
    outside = {p for p in new if tmp_path / "bob" not in p.parents
               and tmp_path / "relay-blobs" not in p.parents and p.name != "relay-blobs"
               and tmp_path / "alice" not in p.parents and not p.name.startswith("relay.db")}
    assert outside == set()
    assert {p for p in new if tmp_path / "bob" in p.parents and p.is_file()
            and (tmp_path / "bob" / "files") not in p.parents
            and not p.name.startswith("state.db")} == set()


async def _tamper_and_receive(nursery, tmp_path: Path, tamper: object,
                              **changes: object) -> tuple[Received, Path]:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    source, _ = _file(tmp_path, "report.pdf", 3 * MEDIA_CHUNK_SIZE + 100)
    async with session_of(alice) as a:
        media = await _upload_and_announce(a, source, "bob", "report.pdf", **changes)
    stored = relay.server.blobs.folder.path(media.blob_id)
    if tamper is not None:
        blob = bytearray(stored.read_bytes())
        tamper(blob)  # type: ignore[operator]
        stored.write_bytes(bytes(blob))  # a hostile relay (or a broken disk)
    got = await drain(bob)
    return got[0], tmp_path / "bob" / "files"


def _flip(blob: bytearray) -> None:
    blob[-1] ^= 1


def _swap_chunks(blob: bytearray) -> None:
    first, second = blob[:SEALED_CHUNK], blob[SEALED_CHUNK:2 * SEALED_CHUNK]
    blob[:2 * SEALED_CHUNK] = second + first


def _replay_chunk(blob: bytearray) -> None:
    blob[SEALED_CHUNK:2 * SEALED_CHUNK] = blob[:SEALED_CHUNK]


def _truncate(blob: bytearray) -> None:
    del blob[-SEALED_CHUNK // 2:]


@pytest.mark.parametrize("tamper,changes,reason", [
    (_flip, {}, "does not verify"),
    (_swap_chunks, {}, "does not verify"),  # reordered chunks
    (_replay_chunk, {}, "does not verify"),  # a chunk replayed in place of the next
    (_truncate, {}, "not as long as its message says"),
    (None, {"sha256": bytes(32)}, "SHA-256 is not the one its message announced"),
    (None, {"size": 3 * MEDIA_CHUNK_SIZE + 99}, "not as long"),
    (None, {"key": bytes(32)}, "does not verify"),
])
async def test_broken_blobs_leave_nothing_in_files(nursery, tmp_path: Path, tamper: object,
                                                   changes: dict, reason: str) -> None:
    received, files = await _tamper_and_receive(nursery, tmp_path, tamper, **changes)
    assert received.file is not None and received.file.path is None
    assert reason in (received.file.error or ""), received.file.error
    assert list(files.iterdir()) == []  # not even the hidden partial download


async def test_fetch_file_retries_a_failed_download(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    source, data = _file(tmp_path, "notes.txt", 5000)
    async with session_of(alice) as a:
        await a.send_file("bob", source)
    blob_file = relay.server.blobs.folder.stored()[0]
    stored = relay.server.blobs.folder.path(blob_file)
    stored.rename(stored.with_suffix(".away"))  # the relay cannot read it for a while
    got = await drain(bob)
    record = got[0].file
    assert record is not None and record.path is None and "unavailable" in (record.error or "")
    stored.with_suffix(".away").rename(stored)
    async with session_of(bob) as b:
        with pytest.raises(ClientError, match="no file"):
            await b.fetch_file("ffff")
        fetched = await b.fetch_file(record.message[:8])
    assert Path(fetched.path or "").read_bytes() == data and fetched.error is None
    assert relay.server.blobs.folder.stored() == []


async def test_oversized_file_is_refused_before_upload(nursery, tmp_path: Path) -> None:
    relay, alice, _ = await relay_with_alice_and_bob(nursery, tmp_path)
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as file:
        file.truncate(MAX_MEDIA_SIZE + 1)  # sparse: no disk is used
    async with session_of(alice) as a:
        with pytest.raises(ClientError, match="at most 104857600"):
            await a.send_file("bob", huge)
        with pytest.raises(ClientError, match="cannot read"):
            await a.send_file("bob", tmp_path / "missing.txt")
    assert relay.server.blobs.folder.stored() == []
    assert not (tmp_path / "alice" / "outgoing").exists()  # nothing was even encrypted


async def test_someone_elses_blob_id_cannot_be_fetched(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    carol = make_client(tmp_path / "carol", relay.port)
    await register(carol, "carol")
    source, _ = _file(tmp_path, "private.txt", 3000)
    async with session_of(alice) as a:
        await a.send_file("carol", source)
        stolen = (await drain(carol))[0].file  # (carol shares what she got with bob)
    assert stolen is not None
    async with session_of(alice) as a:  # alice re-announces carol's copy to bob without a grant
        await a.send_payload("bob", _hostile_payload(stolen.media, "private.txt"))
    got = (await drain(bob))[0].file
    assert got is not None and got.path is None and "unknown_blob" in (got.error or "")
    assert list((tmp_path / "bob" / "files").iterdir()) == []


async def test_upload_resumes_after_a_dropped_connection(nursery, tmp_path: Path) -> None:
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path)
    source, data = _file(tmp_path, "video.mp4", 5 * blob_api.BLOB_CHUNK_SIZE + 10)
    sent: list[int] = []
    async with session_of(alice) as a:
        original = a.connection.submit

        async def drop_after_two(kind: str, **fields: object):  # type: ignore[no-untyped-def]
            if kind == blob_api.UPLOAD_CHUNK:
                if len(sent) == 2:
                    raise ConnectionLost("the connection dropped")
                sent.append(len(fields["data"]))  # type: ignore[arg-type]
            return await original(kind, **fields)

        a.connection.submit = drop_after_two  # type: ignore[method-assign]
        with pytest.raises(ConnectionLost):
            await a.send_file("bob", source)
    staged = list((tmp_path / "alice" / "outgoing").iterdir())
    assert len(staged) == 1  # kept, encrypted once
    resumed: list[dict] = []
    async with session_of(alice) as a:
        original_request = a.connection.request

        async def spy(kind: str, **fields: object) -> dict:
            answer = await original_request(kind, **fields)
            if kind == blob_api.UPLOAD_BEGIN:
                resumed.append(answer)
            return answer

        a.connection.request = spy  # type: ignore[method-assign]
        await a.send_file("bob", source)
    assert resumed[0]["offset"] >= sum(sent[:1]) > 0  # the server said where to go on
    assert not (tmp_path / "alice" / "outgoing" / staged[0].name).exists()
    got = await drain(bob)
    assert Path(got[0].file.path or "").read_bytes() == data  # type: ignore[union-attr]


async def test_relay_never_sees_a_file_plaintext(nursery, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = ("canary-" + secrets.token_hex(16)).encode()
    relay, alice, bob = await relay_with_alice_and_bob(nursery, tmp_path, record=True)
    source = tmp_path / f"{canary.decode()}.txt"
    source.write_bytes(b"the secret is " + canary + os.urandom(200_000) + canary * 1000)
    async with session_of(alice) as a:
        await a.send_file("bob", source, caption=canary.decode())

    def relay_files() -> list[Path]:
        return [p for p in tmp_path.rglob("*") if p.is_file()
                and (p.name.startswith("relay.db") or tmp_path / "relay-blobs" in p.parents)]

    blobs = [p for p in relay_files() if tmp_path / "relay-blobs" in p.parents]
    assert len(blobs) == 1  # stored, not yet fetched
    for stage in ("stored", "delivered"):
        for path in relay_files():
            assert canary not in path.read_bytes(), (stage, path)
        if stage == "stored":
            got = await drain(bob)
            assert Path(got[0].file.path or "").read_bytes() == source.read_bytes()  # type: ignore[union-attr]
    assert len(relay.received) > 200_000
    assert canary not in bytes(relay.received)
    assert canary.decode() not in caplog.text
    assert "connection from" in caplog.text


async def _send_receive_peak(nursery, tmp_path: Path, size: int) -> int:
    folder = tmp_path / str(size)
    folder.mkdir()
    relay, alice, bob = await relay_with_alice_and_bob(nursery, folder)
    source = folder / "big.bin"
    with open(source, "wb") as file:
        block = os.urandom(2**20)
        for _ in range(size // 2**20):
            file.write(block)
    tracemalloc.start()
    try:
        async with session_of(alice) as a:
            await a.send_file("bob", source)
        got = await drain(bob)
        assert Path(got[0].file.path or "").stat().st_size == size  # type: ignore[union-attr]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await relay.stop()


async def test_memory_does_not_grow_with_the_file(nursery, tmp_path: Path) -> None:
    """Client and relay in one process, traced together: 40 MiB costs what 8 MiB costs.

    The peak (about 7 to 10 MiB) is a few 1 MiB frames in flight each way, four per transfer;
    it varies by a MiB or two with timing, not with the size.
    """
    small = await _send_receive_peak(nursery, tmp_path, 8 * 2**20)
    large = await _send_receive_peak(nursery, tmp_path, 40 * 2**20)
    assert large < small + 4 * 2**20, (small, large)  # 32 MiB more file, not 32 MiB more memory
    assert large < 16 * 2**20, large

"""The social server's blob store at the request level: the shared upload and download, a
plaintext message's ``media`` (validated, pushed, in history), blobs announced by a secret
message, and downloads only by members of a conversation the blob was sent in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from client.core.connection import ServerError
from e2e_proto import blob_api
from e2e_proto import social_api as api
from e2e_proto.media import MediaPayload
from server.common.blobs import default_blob_dir
from tests.social_harness import (
    make_client,
    register,
    session_of,
    social_with_alice_and_bob,
)


def _blob(size: int, seed: int = 1) -> tuple[bytes, bytes]:
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)
    return data, hashlib.sha256(data).digest()


def _media(blob_id: bytes, size: int = 10, **extra: object) -> dict:
    return MediaPayload(blob_id, bytes(32), bytes(24), size, "image/png", **extra).fields()


async def _refused(code: str, call: object) -> ServerError:
    with pytest.raises(ServerError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code == code, caught.value
    return caught.value


async def _upload(request: object, data: bytes, blob_id: bytes) -> None:
    await request("upload_begin", blob_id=blob_id, size=len(data))  # type: ignore[operator]
    await request("upload_chunk", blob_id=blob_id, offset=0, data=data)  # type: ignore[operator]
    await request("upload_finish", blob_id=blob_id)  # type: ignore[operator]


async def test_plaintext_media_message_is_pushed_and_kept(nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    carol = make_client(tmp_path / "carol", social.port)
    await register(carol, "carol")
    data, blob_id = _blob(3000)
    media = _media(blob_id, name="cat.png", caption="a cat")
    async with session_of(alice) as a:
        await _refused(blob_api.UNKNOWN_BLOB, a.connection.request(  # not uploaded yet
            "send", conversation="bob", media=media))
        await _upload(a.connection.request, data, blob_id)
        for bad in ({**media, "key": b"short"}, {**media, "mime": "no slash"}, [1, 2],
                    {k: v for k, v in media.items() if k != "size"}):
            await _refused(api.BAD_REQUEST, a.connection.request(
                "send", conversation="bob", media=bad))
        sent = await a.connection.request("send", conversation="bob", media=media)
        texted = await a.connection.request("send", conversation="bob", text="see above",
                                            media=media)
    assert default_blob_dir(tmp_path / "social.db").is_dir()
    async with session_of(bob) as b:
        events = []
        while len(events) < 2:
            frame = await b.connection.pushes.receive()
            if frame.get("type") == "event":
                events.append(frame)
        assert [e["message"] for e in events] == [sent["message"], texted["message"]]
        assert events[0]["media"] == media and events[0]["text"] is None
        assert events[1]["text"] == "see above"
        page = await b.connection.request("history", conversation="alice")
        assert [m["media"] for m in page["messages"]] == [media, media]
        got = await b.connection.request("download", blob_id=blob_id, offset=0)
        assert got["data"] == data and got["size"] == len(data)
        await _refused(api.UNSUPPORTED, b.connection.request("download_done", blob_id=blob_id))
    async with session_of(carol) as c:  # not a member of alice and bob's conversation
        await _refused(blob_api.UNKNOWN_BLOB, c.connection.request(
            "download", blob_id=blob_id, offset=0))


async def test_secret_message_announces_its_blobs(nursery, tmp_path: Path) -> None:
    social, alice, bob = await social_with_alice_and_bob(nursery, tmp_path)
    data, blob_id = _blob(500)
    async with session_of(alice) as a:
        await a.make_secret("bob")
        await _upload(a.connection.request, data, blob_id)
        await _refused(api.SECRET_CONVERSATION, a.connection.request(  # the key in the clear
            "send", conversation="bob", media=_media(blob_id)))
        original = a.connection.request

        async def with_blobs(kind: str, **fields: object) -> dict:
            if kind == "send":
                fields["blobs"] = [blob_id]
            return await original(kind, **fields)

        a.connection.request = with_blobs  # type: ignore[method-assign]
        await a.send_text("bob", "the file's key is in here, encrypted")
    assert social.store.may_download(blob_id, "bob")
    assert not social.store.may_download(blob_id, "carol")
    assert social.store.media([1, 2, 3]) == {}  # no media fields in the clear when secret


async def test_a_message_announces_at_most_its_bound_of_blobs_media_included(
        nursery, tmp_path: Path) -> None:
    social, alice, _ = await social_with_alice_and_bob(nursery, tmp_path)
    blobs = [_blob(100, seed) for seed in range(blob_api.MAX_BLOBS_PER_MESSAGE + 1)]
    async with session_of(alice) as a:
        for data, blob_id in blobs:
            await _upload(a.connection.request, data, blob_id)
        listed = [blob_id for _, blob_id in blobs[:-1]]
        refused = await _refused(api.BAD_REQUEST, a.connection.request(
            "send", conversation="bob", blobs=listed, media=_media(blobs[-1][1], 100)))
        assert "at most 16 blobs" in str(refused)
        sent = await a.connection.request("send", conversation="bob", blobs=listed[:-1],
                                          media=_media(blobs[-1][1], 100))
        page = await a.connection.request("history", conversation="bob")
    assert [m["id"] for m in page["messages"]] == [sent["message"]]  # the refusal: none
    assert social.server.store.may_download(blobs[-1][1], "bob")
    assert not social.server.store.may_download(listed[-1], "bob")

"""The home's file folders and names: a name from a message becomes one new file directly in
``files/``, unique, never replacing anything; the file tables keep the media key, and what names
or describes the file, sealed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.errors import ClientError
from client.core.files import FileStore, private_folder, reserve_name
from client.core.protocol_store import SqliteProtocolStore
from client.private.state import ClientState
from e2e_proto.at_rest import MINIMUM
from e2e_proto.errors import E2EProtoError
from e2e_proto.media import MediaPayload

NAMES = st.text(max_size=300) | st.sampled_from(
    ["../../.bashrc", "/etc/passwd", "..", "a.tar.gz", "x." + "e" * 250, "é" * 200 + ".txt",
     "CON", "noext", ".hidden", "a" * 255])


@settings(max_examples=60, deadline=None)
@given(name=NAMES)
def test_reserved_names_are_new_files_directly_inside(tmp_path_factory: pytest.TempPathFactory,
                                                      name: str) -> None:
    folder = tmp_path_factory.mktemp("files")
    made = [reserve_name(folder, name) for _ in range(12)]
    assert len(set(made)) == 12  # each a new file: nothing is ever replaced
    for path in made:
        assert path.parent == folder and path.is_file() and not path.is_symlink()
        assert len(path.name.encode()) <= 255 and not path.name.startswith((".", " "))
        assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(folder)) == sorted(p.name for p in made)


def test_duplicates_keep_the_extension(tmp_path: Path) -> None:
    assert [reserve_name(tmp_path, "photo.jpg").name for _ in range(3)] == [
        "photo.jpg", "photo (1).jpg", "photo (2).jpg"]
    assert reserve_name(tmp_path, None).name == "attachment"
    long = reserve_name(tmp_path, "a" * 250 + ".jpg")
    again = reserve_name(tmp_path, "a" * 250 + ".jpg")
    assert again.name.endswith(" (1).jpg") and len(again.name.encode()) <= 255 != len(long.name)


def test_a_symlinked_files_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "files").symlink_to(elsewhere)
    with pytest.raises(ClientError, match="not a folder"):
        private_folder(tmp_path / "files")


def test_the_media_key_and_what_names_the_file_are_sealed_at_rest(tmp_path: Path) -> None:
    name, caption, error, where = (secrets.token_hex(8) for _ in range(4))
    store = SqliteProtocolStore(tmp_path / "state.db", "a passphrase", MINIMUM)
    files = FileStore(store, tmp_path)
    media = MediaPayload(bytes(32), b"K" * 32, bytes(24), 5, "text/plain", name + ".txt",
                         caption)
    files.add("00ff", media)
    assert files.failed("00ff", f"cannot save {name}").error == f"cannot save {name}"
    files.add("00ee", media)
    saved = files.saved("00ee", tmp_path / "files" / where, b"h" * 32)
    record = files.get("00ff")
    assert record is not None and record.media == media and record.path is None
    assert saved.path == str(tmp_path / "files" / where) and saved.error is None
    assert files.find("00f").message == "00ff"
    with pytest.raises(ClientError):
        files.find("%")
    files.failed("00ee", error)
    # A sealed value is bound to its row and column: moved elsewhere, it does not open.
    store.connection.execute("UPDATE files SET caption = (SELECT name FROM files WHERE "
                             "message = '00ff') WHERE message = '00ff'")
    with pytest.raises(E2EProtoError):
        files.get("00ff")
    store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert b"K" * 32 not in stored
    assert not any(c.encode() in stored for c in (name, caption, error, where))


def test_file_rows_a_home_stored_in_the_clear_are_sealed_when_opened(tmp_path: Path) -> None:
    """A sealed home made before file names were sealed: its clear rows are sealed on opening."""
    canary = secrets.token_hex(8)
    store = SqliteProtocolStore(tmp_path / "state.db", "pass", MINIMUM)
    FileStore(store, tmp_path)
    store.connection.execute(
        "INSERT INTO files (message, blob_id, key, header, size, mime, name, caption, path) "
        "VALUES ('0a', ?, ?, ?, 1, 'text/plain', ?, ?, ?)",
        (bytes(32), store.seal(b"K" * 32, "media_key"), bytes(24), canary + ".txt",
         "caption " + canary, f"/files/{canary}.txt"))
    store.close()
    state = ClientState(tmp_path, "pass", MINIMUM)
    record = state.files.get("0a")
    state.close()
    assert record is not None and record.media.name == canary + ".txt"
    assert (record.media.caption, record.path) == ("caption " + canary, f"/files/{canary}.txt")
    assert canary.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))

"""The home's file folders and names: a name from a message becomes one new file directly in
``files/``, unique, never replacing anything; the file tables keep the media key sealed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.errors import ClientError
from client.core.files import FileStore, private_folder, reserve_name
from client.core.protocol_store import SqliteProtocolStore
from e2e_proto.at_rest import MINIMUM
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


def test_the_media_key_is_sealed_at_rest(tmp_path: Path) -> None:
    store = SqliteProtocolStore(tmp_path / "state.db", "a passphrase", MINIMUM)
    files = FileStore(store, tmp_path)
    media = MediaPayload(bytes(32), b"K" * 32, bytes(24), 5, "text/plain", "a.txt")
    files.add("00ff", media)
    record = files.get("00ff")
    assert record is not None and record.media == media
    assert files.find("00f").message == "00ff"
    with pytest.raises(ClientError):
        files.find("%")
    store.close()
    assert b"K" * 32 not in (tmp_path / "state.db").read_bytes()

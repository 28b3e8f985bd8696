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
from client.core.files import FileStore, Outgoing, private_folder, reserve_name
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
    store.connection.execute("DELETE FROM file_keys_bound")  # as made before keys were bound
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


def _two_files_and_two_sends(files: FileStore, folder: Path) -> None:
    for name, key in (("0a", b"A" * 32), ("0b", b"B" * 32)):
        blob_id = key[:1] * 32
        files.add(name, MediaPayload(blob_id, key, bytes(24), 5, "text/plain"))
        (folder / blob_id.hex()).write_bytes(b"blob")
        files.add_outgoing(Outgoing(f"/sent/{name}", blob_id, key, bytes(24), 5, bytes(32),
                                    folder / blob_id.hex()))


def _keys(files: FileStore) -> list[bytes]:
    sent = [files.outgoing(f"/sent/{name}") for name in ("0a", "0b")]
    got = [files.get(name) for name in ("0a", "0b")]
    return [r.media.key for r in got if r] + [o.key for o in sent if o]


def test_a_sealed_media_key_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    """Each media key is sealed with its row as the place, like a sealed text (finding 18)."""
    store = SqliteProtocolStore(tmp_path / "state.db", "a passphrase", MINIMUM)
    files = FileStore(store, tmp_path)
    _two_files_and_two_sends(files, files.outgoing_folder)
    assert _keys(files) == [b"A" * 32, b"B" * 32] * 2
    db = store.connection
    db.execute("UPDATE files SET key = (SELECT key FROM files WHERE message = '0b') "
               "WHERE message = '0a'")
    db.execute("UPDATE outgoing_files SET key = (SELECT key FROM outgoing_files WHERE "
               "source = '/sent/0a') WHERE source = '/sent/0b'")
    with pytest.raises(E2EProtoError):
        files.get("0a")
    with pytest.raises(E2EProtoError):
        files.outgoing("/sent/0b")
    assert files.get("0b").media.key == b"B" * 32  # type: ignore[union-attr]
    assert files.outgoing("/sent/0a").key == b"A" * 32  # type: ignore[union-attr]


def test_media_keys_sealed_before_they_were_bound_to_their_row_are_bound_on_opening(
        tmp_path: Path) -> None:
    store = SqliteProtocolStore(tmp_path / "state.db", "pass", MINIMUM)
    files = FileStore(store, tmp_path)
    _two_files_and_two_sends(files, files.outgoing_folder)
    db = store.connection
    for table, row in (("files", "message"), ("outgoing_files", "source")):  # as sealed before
        for (name,) in db.execute(f"SELECT {row} FROM {table}").fetchall():
            opened = files.get(name).media.key if table == "files" else files.outgoing(name).key
            db.execute(f"UPDATE {table} SET key = ? WHERE {row} = ?",
                       (store.seal(opened, "media_key"), name))
    db.execute("DELETE FROM file_keys_bound")
    store.close()
    state = ClientState(tmp_path, "pass", MINIMUM)
    assert _keys(state.files) == [b"A" * 32, b"B" * 32] * 2
    for (stored,) in state.db.execute("SELECT key FROM files UNION ALL "
                                      "SELECT key FROM outgoing_files").fetchall():
        with pytest.raises(E2EProtoError):
            state.protocol.unseal(stored, "media_key")
    state.close()
    again = ClientState(tmp_path, "pass", MINIMUM)  # bound once: opening again changes nothing
    assert _keys(again.files) == [b"A" * 32, b"B" * 32] * 2
    again.close()

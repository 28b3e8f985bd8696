"""Client state sealed at rest with a passphrase (Argon2id + XChaCha20-Poly1305)."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

import pytest

from client.cli.main import main as cli_main
from client.core import protocol_store
from client.core.home_state import HomeState
from client.core.protocol_store import SqliteProtocolStore
from client.private.state import ClientState, StoredMessage
from client.social.state import SocialEvent, SocialState
from e2e_proto.address import Address
from e2e_proto.at_rest import MINIMUM, AtRestKey, WrongPassphraseError
from e2e_proto.errors import LocalProtocolError
from e2e_proto.keys import OneTimePreKey, X25519PrivateKey
from tests.helpers import connect, make_device


def _store(path: Path, passphrase: str | None) -> SqliteProtocolStore:
    return SqliteProtocolStore(path, passphrase, MINIMUM)


def test_sealed_store_hides_secrets_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    bob = make_device("bob", store=_store(path, "correct horse"))
    alice = make_device("alice")
    connect(alice, bob)
    bob.cipher.decrypt(alice.cipher.encrypt(bob.address, b"hello"))
    record = bob.store.load_session(alice.address)
    secrets = [bob.identity.seed, bob.signed_prekey.private_key.raw,
               bob.one_time_prekeys[0].private_key.raw, record.ratchet.root_key]
    bob.store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert not any(secret in stored for secret in secrets)
    reopened = _store(path, "correct horse")
    assert reopened.identity_key_pair().seed == bob.identity.seed
    assert reopened.load_session(Address("alice", 0)).to_bytes() == record.to_bytes()
    reopened.close()


def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_device("bob", store=_store(path, "right")).store.close()
    with pytest.raises(WrongPassphraseError):
        _store(path, "wrong")
    with pytest.raises(WrongPassphraseError, match="passphrase is needed"):
        _store(path, None)


def test_plaintext_store_is_not_mixed_with_sealed_values(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_device("bob", store=_store(path, None)).store.close()
    with pytest.raises(LocalProtocolError, match="without a passphrase"):
        _store(path, "late")


def test_cli_wrong_passphrase_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("E2E_PASSPHRASE", "first")
    assert cli_main(["--home", str(home), "--relay", "127.0.0.1:9", "whoami"]) == 1
    capsys.readouterr()
    monkeypatch.setenv("E2E_PASSPHRASE", "second")
    assert cli_main(["--home", str(home), "whoami"]) == 1
    err = capsys.readouterr().err
    assert "passphrase does not open" in err and err.count("\n") == 1


def _files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())


def _open_fds_to(path: Path) -> list[str]:
    """This process's open file descriptors on ``path`` (or its -wal/-shm files)."""
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_message_texts_are_sealed_too(tmp_path: Path) -> None:
    canaries = [secrets.token_hex(8) for _ in range(4)]
    home = tmp_path / "home"
    state = ClientState(home, "correct horse", MINIMUM)
    state.add_message(StoredMessage(b"i" * 16, "bob", 0, "bob", 1, "text", canaries[0]), 1.0)
    state.close()
    social_home = tmp_path / "social"
    social = SocialState(social_home, "correct horse", MINIMUM)
    social.save_secret(SocialEvent(0, "message", "bob", "bob", 0, 1, 7, canaries[1], secret=True))
    social.add_event(SocialEvent(8, "message", "bob", "bob", 0, 1, 8, canaries[2]))
    social.add_event(SocialEvent(9, "reaction", "bob", "bob", 0, 1, 8, None, canaries[3][:1]
                                 + "\N{THUMBS UP SIGN}"))
    social.close()
    stored = _files(home) + _files(social_home)
    assert not any(c.encode() in stored for c in canaries)
    assert not any(c.encode().hex().encode() in stored for c in canaries)
    state = ClientState(home, "correct horse", MINIMUM)
    assert [m.text for m in state.unseen()] == [canaries[0]]
    assert state.messages("bob")[0].text == canaries[0]
    assert state.find_message("6969").text == canaries[0]
    state.close()
    social = SocialState(social_home, "correct horse", MINIMUM)
    assert social.secret_text(7) == canaries[1]
    events = social.unseen_events()
    assert [(e.text, e.emoji) for e in events] == [
        (canaries[2], None), (None, canaries[3][:1] + "\N{THUMBS UP SIGN}")]
    social.close()


def test_right_passphrase_opens_whatever_cost_is_asked_now(tmp_path: Path) -> None:
    """The Argon2id cost is stored with the salt: the one the file was made with is used."""
    path = tmp_path / "state.db"
    make_device("bob", store=_store(path, "right")).store.close()
    other = (MINIMUM[0] + 1, MINIMUM[1] * 2)
    reopened = SqliteProtocolStore(path, "right", other)
    assert reopened.has_identity()
    reopened.close()
    with pytest.raises(WrongPassphraseError, match="passphrase does not open"):
        SqliteProtocolStore(path, "wrong", other)


def test_stored_cost_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_device("bob", store=_store(path, "right")).store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE at_rest SET memlimit = ?", (1 << 40,))  # 1 TiB: a tampered file
    db.commit()
    db.close()
    with pytest.raises(LocalProtocolError, match="cost"):
        _store(path, "right")
    with pytest.raises(LocalProtocolError, match="cost"):
        SqliteProtocolStore(tmp_path / "new.db", "p", (1, 1 << 40))


def test_deleted_keys_do_not_linger_in_the_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """secure_delete is set by the store itself, whatever SQLite's build default is."""
    real = protocol_store.open_private_database

    def without_secure_delete(path: Path) -> sqlite3.Connection:
        db = real(path)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(protocol_store, "open_private_database", without_secure_delete)
    store = SqliteProtocolStore(tmp_path / "state.db")
    prekeys = [OneTimePreKey(i, X25519PrivateKey.generate()) for i in range(1, 21)]
    store.store_one_time_prekeys(prekeys)
    for prekey in prekeys:
        store.remove_one_time_prekey(prekey.key_id)
    store.close()
    stored = _files(tmp_path)
    assert not any(p.private_key.raw in stored for p in prekeys)


def test_close_checkpoints_the_wal_even_with_another_reader(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reader = sqlite3.connect(path)  # another process's connection (a second e2e-chat)
    store = make_device("bob", store=SqliteProtocolStore(path)).store
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
    store.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    reader.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_connection_closed_when_opening_fails(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_device("bob", store=_store(path, "right")).store.close()
    with pytest.raises(WrongPassphraseError) as wrong:
        _store(path, "wrong")
    assert _open_fds_to(path) == [], wrong

    class Broken(HomeState):
        state_file = "broken.db"
        schema = "CREATE TABLE oops ("

    with pytest.raises(sqlite3.Error) as broken:
        Broken(tmp_path / "home")
    assert _open_fds_to(tmp_path / "home" / "broken.db") == [], broken


def test_sealed_home_made_before_keeps_opening_and_is_migrated(tmp_path: Path) -> None:
    """A home sealed by an earlier version: no cost beside the salt, message texts in clear."""
    home = tmp_path / "home"
    home.mkdir()
    db = sqlite3.connect(home / "state.db")
    db.executescript(
        "CREATE TABLE at_rest (id INTEGER PRIMARY KEY CHECK (id = 0), salt BLOB NOT NULL, "
        "check_value BLOB NOT NULL);"
        "CREATE TABLE messages (id BLOB PRIMARY KEY, seen INTEGER NOT NULL, sender TEXT NOT "
        "NULL, sender_device INTEGER NOT NULL, peer TEXT NOT NULL, ts INTEGER NOT NULL, kind "
        "TEXT NOT NULL, text TEXT, received_at REAL NOT NULL);")
    salt = bytes(range(16))
    db.execute("INSERT INTO at_rest VALUES (0, ?, ?)",
               (salt, AtRestKey.derive("pass", salt, MINIMUM).check_value()))
    canary = secrets.token_hex(8)
    db.execute("INSERT INTO messages VALUES (?, 0, 'bob', 0, 'bob', 1, 'text', ?, 1.0)",
               (b"m" * 16, canary))
    db.commit()
    db.close()
    state = ClientState(home, "pass", MINIMUM)
    assert [m.text for m in state.unseen()] == [canary]
    state.close()
    assert canary.encode() not in _files(home)
    state = ClientState(home, "pass", (MINIMUM[0] + 1, MINIMUM[1]))  # its cost is kept now
    assert [m.text for m in state.unseen()] == [canary]
    state.close()

"""Client state sealed at rest with a passphrase (Argon2id + XChaCha20-Poly1305)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.cli.main import main as cli_main
from client.core.protocol_store import SqliteProtocolStore
from e2e_proto.address import Address
from e2e_proto.at_rest import MINIMUM, WrongPassphraseError
from e2e_proto.errors import LocalProtocolError
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

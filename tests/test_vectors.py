import json
import shutil
from pathlib import Path

import pytest

from e2e_proto import vectors

COMMITTED = Path(__file__).parent / "vectors"


def test_committed_vectors_check() -> None:
    assert vectors.check(COMMITTED) == []


def test_generation_is_reproducible(tmp_path: Path) -> None:
    vectors.generate(tmp_path)
    for name in vectors.GENERATORS:
        assert (tmp_path / name).read_text() == (COMMITTED / name).read_text(), name


def test_field_names_are_exactly_the_design() -> None:
    x3dh = json.loads((COMMITTED / "x3dh.json").read_text())
    assert len(x3dh["cases"]) >= 4
    assert {c["dh4"] is None for c in x3dh["cases"]} == {True, False}
    assert set(x3dh["cases"][0]) == {
        "alice_identity_seed", "alice_identity_public", "alice_ephemeral_private",
        "alice_ephemeral_public", "bob_identity_seed", "bob_identity_public",
        "bob_signed_prekey_id", "bob_signed_prekey_private", "bob_signed_prekey_public",
        "bob_signed_prekey_signature", "bob_one_time_prekey_private",
        "bob_one_time_prekey_public", "dh1", "dh2", "dh3", "dh4", "shared_secret",
        "associated_data"}
    ratchet = json.loads((COMMITTED / "ratchet.json").read_text())
    assert len(ratchet["conversations"]) >= 3
    for conversation in ratchet["conversations"]:
        sends = [e for e in conversation["events"] if e["op"] == "send"]
        assert len(sends) >= 12 and {e["party"] for e in sends} == {"alice", "bob"}
        assert set(sends[0]) == {"op", "party", "message", "plaintext", "header",
                                 "message_key", "nonce", "ciphertext"}
    fingerprint = json.loads((COMMITTED / "fingerprint.json").read_text())
    assert fingerprint["iterations"] == 5200 and len(fingerprint["cases"]) >= 3
    sender_key = json.loads((COMMITTED / "sender_key.json").read_text())
    assert sender_key["protocol"] == "E2EProto SenderKey v1" and len(sender_key["cases"]) >= 3
    for case in sender_key["cases"]:
        assert list(case) == ["group_id", "chain_id", "chain_key", "signing_seed",
                              "signing_public", "messages"]
        iterations = [m["iteration"] for m in case["messages"]]
        assert iterations == sorted(set(iterations))
        assert iterations[-1] - iterations[0] >= len(iterations)  # gaps: skipped messages
        assert all(list(m) == ["iteration", "plaintext", "message_key", "nonce", "header",
                               "ciphertext", "signature"] for m in case["messages"])


@pytest.mark.parametrize("name,path", [
    ("x3dh.json", ("cases", 1, "shared_secret")),
    ("ratchet.json", ("conversations", 2, "events", 5, "ciphertext")),
    ("ratchet.json", ("conversations", 0, "bob_ratchet_privates", 0)),
    ("fingerprint.json", ("cases", 0, "safety_number")),
    ("envelope.json", ("envelopes", 1, "fields", "ephemeral_key")),
    ("sender_key.json", ("cases", 0, "signing_seed")),
    ("sender_key.json", ("cases", 1, "messages", 3, "message_key")),
    ("sender_key.json", ("cases", 2, "messages", 4, "signature")),
    ("sender_key.json", ("cases", 2, "messages", 0, "nonce")),
])
def test_a_changed_value_is_caught(tmp_path: Path, name: str, path: tuple) -> None:
    for file in COMMITTED.glob("*.json"):
        shutil.copy(file, tmp_path / file.name)
    data = json.loads((tmp_path / name).read_text())
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    value = parent[path[-1]]
    parent[path[-1]] = ("1" if value[0] != "1" else "2") + value[1:]
    (tmp_path / name).write_text(json.dumps(data))
    problems = vectors.check(tmp_path)
    assert problems and all(p.startswith(name) for p in problems)


def test_cli_check_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert vectors.main(["check", "--dir", str(COMMITTED)]) == 0
    assert vectors.main(["check", "--dir", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().err

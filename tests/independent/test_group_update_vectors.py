"""Re-derive ``group_update.json`` from docs/PROTOCOL.md §16 alone, with pyca/cryptography.

Nothing here imports :mod:`e2e_proto` or PyNaCl: the bodies are built from the listed fields in
the documented order, signed with pyca's Ed25519, and the digests hashed with hashlib.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

UPDATE_PREFIX = b"e2e-proto/group-update/v1"
ROUTING_PREFIX = b"e2e-proto/group-routing/v1"
DEVICES_PREFIX = b"e2e-proto/group-devices/v1"
DATA = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "group_update.json")
                  .read_text(encoding="utf-8"))


def _body(case: dict[str, Any], with_name: bool) -> bytes:
    """[group_id, version, (name,) members, admin indices, author account, author device]."""
    members = case["members"]
    fields: list[Any] = [bytes.fromhex(case["group_id"]), case["version"]]
    if with_name:
        fields.append(case["name"])
    fields += [members, [members.index(a) for a in case["admins"]], case["author_account"],
               case["author_device"]]
    return msgpack.packb(fields, use_bin_type=True)


def test_file_header() -> None:
    assert DATA["protocol"] == "E2EProto GroupUpdate v1"
    assert len(DATA["cases"]) >= 3 and len(DATA["devices_digests"]) >= 3


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["name"][:12])
def test_signed_group_states(case: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["author_seed"]))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public.hex() == case["author_public"]
    assert case["members"] == sorted(set(case["members"]))
    for prefix, with_name, name in ((UPDATE_PREFIX, True, ""), (ROUTING_PREFIX, False,
                                                                  "routing_")):
        body = _body(case, with_name)
        assert body.hex() == case[f"{name}body"]
        assert (prefix + body).hex() == case[f"{name}signed_bytes"]
        assert key.sign(prefix + body).hex() == case[f"{name}signature"]


@pytest.mark.parametrize("case", DATA["devices_digests"], ids=lambda c: c["digest"][:8])
def test_devices_digests(case: dict[str, Any]) -> None:
    canonical = [[account, sorted(ids)] for account, ids in sorted(case["devices"])]
    digest = hashlib.sha256(DEVICES_PREFIX + msgpack.packb(canonical, use_bin_type=True))
    assert digest.hexdigest() == case["digest"]

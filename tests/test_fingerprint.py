"""Tests of e2e_proto.fingerprint: safety numbers (DESIGN §7), checked against hashlib."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e_proto.address import ACCOUNT_PATTERN
from e2e_proto.fingerprint import displayable_fingerprint, format_safety_number, safety_number
from e2e_proto.keys import Ed25519PublicKey, IdentityKeyPair

VECTORS = json.loads((Path(__file__).parent / "vectors" / "fingerprint.json").read_text())


def reference_fingerprint(account: str, aik_pub: bytes, iterations: int = 5200) -> str:
    """DESIGN §7, written from the text with hashlib only."""
    digest = hashlib.sha512(b"\x00\x00" + aik_pub + account.encode()).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha512(digest + aik_pub).digest()
    chunks = [int.from_bytes(digest[i:i + 5], "big") % 100000 for i in range(0, 30, 5)]
    return "".join(f"{chunk:05d}" for chunk in chunks)


def reference_safety_number(account_a: str, key_a: bytes, account_b: str, key_b: bytes) -> str:
    halves = [reference_fingerprint(account_a, key_a), reference_fingerprint(account_b, key_b)]
    return min(halves) + max(halves)


def aik(seed_byte: int) -> Ed25519PublicKey:
    return IdentityKeyPair(bytes([seed_byte]) * 32).public_key


ALICE, BOB, MALLORY = aik(1), aik(2), aik(3)
seeds = st.binary(min_size=32, max_size=32)
accounts = st.from_regex(ACCOUNT_PATTERN, fullmatch=True)


# -- against the independent computation ------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(seeds, accounts)
def test_displayable_fingerprint_matches_reference(seed: bytes, account: str) -> None:
    key = IdentityKeyPair(seed).public_key
    assert displayable_fingerprint(account, key) == reference_fingerprint(account, key.raw)


@settings(max_examples=4, deadline=None)
@given(seeds, accounts, seeds, accounts)
def test_safety_number_matches_reference(seed_a: bytes, account_a: str,
                                         seed_b: bytes, account_b: str) -> None:
    key_a, key_b = IdentityKeyPair(seed_a).public_key, IdentityKeyPair(seed_b).public_key
    expected = reference_safety_number(account_a, key_a.raw, account_b, key_b.raw)
    assert safety_number(account_a, key_a, account_b, key_b) == expected


def test_reference_iteration_count_matters() -> None:
    # The reference is sensitive to the count, so agreeing with it pins 5200 iterations.
    key = ALICE.raw
    assert reference_fingerprint("alice", key) != reference_fingerprint("alice", key, 5199)
    assert displayable_fingerprint("alice", ALICE) == reference_fingerprint("alice", key)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['local_account']}"
                         f"-{c['remote_account']}")
def test_vector_file_agrees_with_reference(case: dict[str, Any]) -> None:
    local = IdentityKeyPair(bytes.fromhex(case["local_aik_seed"])).public_key
    remote = IdentityKeyPair(bytes.fromhex(case["remote_aik_seed"])).public_key
    assert local.raw.hex() == case["local_aik_public"]
    assert remote.raw.hex() == case["remote_aik_public"]
    expected = reference_safety_number(case["local_account"], local.raw,
                                       case["remote_account"], remote.raw)
    assert case["safety_number"] == expected
    assert safety_number(case["local_account"], local, case["remote_account"], remote) == expected
    assert VECTORS["iterations"] == 5200


# -- properties -------------------------------------------------------------------------------


def test_safety_number_is_symmetric_and_60_digits() -> None:
    number = safety_number("alice", ALICE, "bob", BOB)
    assert number == safety_number("bob", BOB, "alice", ALICE)
    assert len(number) == 60 and re.fullmatch(r"[0-9]{60}", number)


@settings(max_examples=4, deadline=None)
@given(seeds, accounts, seeds, accounts)
def test_safety_number_symmetric_for_any_parties(seed_a: bytes, account_a: str,
                                                 seed_b: bytes, account_b: str) -> None:
    key_a, key_b = IdentityKeyPair(seed_a).public_key, IdentityKeyPair(seed_b).public_key
    number = safety_number(account_a, key_a, account_b, key_b)
    assert number == safety_number(account_b, key_b, account_a, key_a)
    assert re.fullmatch(r"[0-9]{60}", number)
    halves = {number[:30], number[30:]}
    assert halves == {displayable_fingerprint(account_a, key_a),
                      displayable_fingerprint(account_b, key_b)}
    assert number[:30] <= number[30:]


@pytest.mark.parametrize(("local", "remote"), [
    (("alice", MALLORY), ("bob", BOB)),      # local key changed
    (("alice", ALICE), ("bob", MALLORY)),    # remote key changed
    (("alicia", ALICE), ("bob", BOB)),       # local account changed
    (("alice", ALICE), ("bobby", BOB)),      # remote account changed
    (("bob", ALICE), ("alice", BOB)),        # accounts swapped between the keys
], ids=["local-key", "remote-key", "local-account", "remote-account", "accounts-swapped"])
def test_safety_number_changes(local: tuple[str, Ed25519PublicKey],
                               remote: tuple[str, Ed25519PublicKey]) -> None:
    original = safety_number("alice", ALICE, "bob", BOB)
    assert safety_number(*local, *remote) != original


def test_fingerprint_depends_on_account_and_key() -> None:
    base = displayable_fingerprint("alice", ALICE)
    assert re.fullmatch(r"[0-9]{30}", base)
    assert displayable_fingerprint("alice", BOB) != base
    assert displayable_fingerprint("alice2", ALICE) != base
    assert displayable_fingerprint("alice", ALICE) == base


def test_format_safety_number() -> None:
    number = safety_number("alice", ALICE, "bob", BOB)
    formatted = format_safety_number(number)
    groups = formatted.split(" ")
    assert len(groups) == 12
    assert all(re.fullmatch(r"[0-9]{5}", group) for group in groups)
    assert "".join(groups) == number
    assert formatted == " ".join(number[i:i + 5] for i in range(0, 60, 5))
    assert format_safety_number("0" * 60) == " ".join(["00000"] * 12)

"""Conformance tests of the protocol stores: MemoryProtocolStore and SqliteProtocolStore."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from client.core.protocol_store import SqliteProtocolStore
from e2e_proto.address import Address
from e2e_proto.errors import LocalProtocolError, MalformedError
from e2e_proto.keys import (
    IdentityKeyPair,
    OneTimePreKey,
    PreKeyBundle,
    SignedPreKey,
    X25519PrivateKey,
)
from e2e_proto.session import process_prekey_bundle
from e2e_proto.session_record import SessionRecord
from e2e_proto.stores import MemoryProtocolStore, ProtocolStore

StoreFactory = Callable[[IdentityKeyPair | None], ProtocolStore]

ALICE = IdentityKeyPair(b"\x01" * 32)
BOB = IdentityKeyPair(b"\x02" * 32)
CAROL = IdentityKeyPair(b"\x03" * 32)
BOB_0 = Address("bob", 0)
BOB_1 = Address("bob", 1)
BOB_7 = Address("bob", 7)
CAROL_0 = Address("carol", 0)


def signed_prekey(identity: IdentityKeyPair, key_id: int, byte: int) -> SignedPreKey:
    return SignedPreKey.create(identity, key_id, X25519PrivateKey(bytes([byte]) * 32))


def one_time_prekey(key_id: int, byte: int) -> OneTimePreKey:
    return OneTimePreKey(key_id, X25519PrivateKey(bytes([byte]) * 32))


def bundle_for(identity: IdentityKeyPair, with_opk: bool = True) -> PreKeyBundle:
    spk = signed_prekey(identity, 5, 0x51)
    opk = one_time_prekey(9, 0x61) if with_opk else None
    return PreKeyBundle(
        identity.public_key, spk.key_id, spk.public_key, spk.signature,
        None if opk is None else opk.key_id, None if opk is None else opk.public_key,
    )


def make_session(store: ProtocolStore, remote: Address, identity: IdentityKeyPair = BOB,
                 with_opk: bool = True) -> SessionRecord:
    return process_prekey_bundle(store, remote, bundle_for(identity, with_opk))


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[SqliteProtocolStore] = []

    def make(identity: IdentityKeyPair | None = ALICE) -> ProtocolStore:
        if request.param == "memory":
            return MemoryProtocolStore(identity)
        store = SqliteProtocolStore(tmp_path / f"store-{len(opened)}.db")
        opened.append(store)
        if identity is not None:
            store.set_identity_key_pair(identity)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "client.db"


@pytest.fixture
def sqlite_store(sqlite_path: Path) -> Iterator[SqliteProtocolStore]:
    store = SqliteProtocolStore(sqlite_path)
    store.set_identity_key_pair(ALICE)
    yield store
    store.close()


# -- conformance: identities ------------------------------------------------------------------


def test_missing_identity_key_pair_is_a_local_error(make_store: StoreFactory) -> None:
    store = make_store(None)
    with pytest.raises(LocalProtocolError):
        store.identity_key_pair()


def test_identity_key_pair(make_store: StoreFactory) -> None:
    pair = make_store(ALICE).identity_key_pair()
    assert pair.public_key == ALICE.public_key
    assert pair.seed == ALICE.seed
    assert pair.sign(b"m") == ALICE.sign(b"m")


def test_save_identity(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    assert store.get_identity(BOB_0) is None
    assert store.save_identity(BOB_0, BOB.public_key) is False  # first time
    assert store.get_identity(BOB_0) == BOB.public_key
    assert store.save_identity(BOB_0, BOB.public_key) is False  # same key again
    assert store.get_identity(BOB_0) == BOB.public_key
    assert store.save_identity(BOB_0, CAROL.public_key) is True  # changed key
    assert store.get_identity(BOB_0) == CAROL.public_key
    assert store.save_identity(BOB_0, CAROL.public_key) is False
    assert store.save_identity(BOB_0, BOB.public_key) is True  # changed back


def test_identities_are_per_address(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    assert store.save_identity(BOB_0, BOB.public_key) is False
    assert store.save_identity(BOB_1, CAROL.public_key) is False
    assert store.save_identity(CAROL_0, CAROL.public_key) is False
    assert store.get_identity(BOB_0) == BOB.public_key
    assert store.get_identity(BOB_1) == CAROL.public_key
    assert store.get_identity(CAROL_0) == CAROL.public_key
    assert store.get_identity(BOB_7) is None
    assert store.get_identity(Address("carol", 1)) is None


# -- conformance: prekeys ---------------------------------------------------------------------


def test_signed_prekeys(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    first, second = signed_prekey(ALICE, 1, 0x11), signed_prekey(ALICE, 2**32 - 1, 0x12)
    assert store.load_signed_prekey(1) is None
    store.store_signed_prekey(first)
    store.store_signed_prekey(second)
    assert store.load_signed_prekey(1) == first
    assert store.load_signed_prekey(2**32 - 1) == second
    assert store.load_signed_prekey(2) is None
    replacement = signed_prekey(ALICE, 1, 0x13)
    store.store_signed_prekey(replacement)
    loaded = store.load_signed_prekey(1)
    assert loaded == replacement and loaded != first
    assert loaded is not None and loaded.public_key == replacement.public_key


def test_one_time_prekeys(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    batch = [one_time_prekey(key_id, 0x20 + key_id) for key_id in range(1, 6)]
    assert store.load_one_time_prekey(1) is None
    store.store_one_time_prekeys(batch)
    store.store_one_time_prekeys(iter([one_time_prekey(100, 0x70)]))  # any iterable
    store.store_one_time_prekeys([])
    for prekey in batch:
        assert store.load_one_time_prekey(prekey.key_id) == prekey
    assert store.load_one_time_prekey(100) == one_time_prekey(100, 0x70)
    store.remove_one_time_prekey(3)
    assert store.load_one_time_prekey(3) is None
    assert [store.load_one_time_prekey(i) for i in (1, 2, 4, 5)] == [
        batch[0], batch[1], batch[3], batch[4]]
    store.remove_one_time_prekey(3)  # removing twice is harmless
    store.remove_one_time_prekey(999)  # so is removing an unknown id
    assert store.load_one_time_prekey(1) == batch[0]


def test_one_time_and_signed_prekey_ids_are_separate(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    store.store_signed_prekey(signed_prekey(ALICE, 7, 0x31))
    assert store.load_one_time_prekey(7) is None
    store.store_one_time_prekeys([one_time_prekey(7, 0x32)])
    store.remove_one_time_prekey(7)
    assert store.load_signed_prekey(7) == signed_prekey(ALICE, 7, 0x31)


# -- conformance: sessions --------------------------------------------------------------------


def test_sessions(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    assert store.load_session(BOB_0) is None
    assert store.session_devices("bob") == []
    record = make_session(store, BOB_0)
    loaded = store.load_session(BOB_0)
    assert loaded is not None and loaded.to_bytes() == record.to_bytes()
    assert loaded.remote_identity == BOB.public_key
    assert store.get_identity(BOB_0) == BOB.public_key  # process_prekey_bundle saved it
    assert store.session_devices("bob") == [0]
    assert store.load_session(BOB_1) is None


def test_session_devices(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    for address in (BOB_7, BOB_0, BOB_1, CAROL_0):
        make_session(store, address, CAROL if address.account == "carol" else BOB)
    assert store.session_devices("bob") == [0, 1, 7]
    assert store.session_devices("carol") == [0]
    assert store.session_devices("dave") == []
    assert store.session_devices("bo") == []
    store.delete_session(BOB_1)
    assert store.session_devices("bob") == [0, 7]
    assert store.load_session(BOB_1) is None
    assert store.load_session(BOB_0) is not None


def test_store_session_replaces(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    first = make_session(store, BOB_0, with_opk=True)
    second = make_session(store, BOB_0, with_opk=False)
    assert first.to_bytes() != second.to_bytes()
    loaded = store.load_session(BOB_0)
    assert loaded is not None and loaded.to_bytes() == second.to_bytes()
    store.store_session(BOB_0, first)
    loaded = store.load_session(BOB_0)
    assert loaded is not None and loaded.to_bytes() == first.to_bytes()
    assert store.session_devices("bob") == [0]


def test_delete_session(make_store: StoreFactory) -> None:
    store = make_store(ALICE)
    make_session(store, BOB_0)
    store.delete_session(BOB_0)
    assert store.load_session(BOB_0) is None
    assert store.session_devices("bob") == []
    store.delete_session(BOB_0)  # deleting again is harmless
    store.delete_session(CAROL_0)
    assert store.get_identity(BOB_0) == BOB.public_key  # the identity outlives the session


# -- SQLite only ------------------------------------------------------------------------------


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sqlite_file_mode_is_0600(sqlite_store: SqliteProtocolStore, sqlite_path: Path) -> None:
    make_session(sqlite_store, BOB_0)  # a write, so that the WAL file is in use
    assert file_mode(sqlite_path) == 0o600
    wal = Path(f"{sqlite_path}-wal")
    assert wal.exists()  # WAL mode, connection open: the -wal file is there
    for side in (wal, Path(f"{sqlite_path}-shm")):
        if side.exists():
            assert file_mode(side) == 0o600, side.name
    mode = sqlite_store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "loose.db"
    path.touch()
    os.chmod(path, 0o644)
    store = SqliteProtocolStore(path)
    try:
        assert file_mode(path) == 0o600
    finally:
        store.close()


def test_sqlite_new_file_private_under_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "umask.db"
    previous = os.umask(0)
    try:
        store = SqliteProtocolStore(path)
    finally:
        os.umask(previous)
    try:
        store.set_identity_key_pair(ALICE)
        assert file_mode(path) == 0o600
    finally:
        store.close()


def test_sqlite_reopen_sees_everything(sqlite_store: SqliteProtocolStore,
                                       sqlite_path: Path) -> None:
    spk = signed_prekey(ALICE, 5, 0x41)
    opks = [one_time_prekey(i, 0x42 + i) for i in (1, 2, 3)]
    sqlite_store.store_signed_prekey(spk)
    sqlite_store.store_one_time_prekeys(opks)
    sqlite_store.remove_one_time_prekey(2)
    bob0 = make_session(sqlite_store, BOB_0)
    bob7 = make_session(sqlite_store, BOB_7, with_opk=False)
    make_session(sqlite_store, CAROL_0, CAROL)
    sqlite_store.delete_session(CAROL_0)
    sqlite_store.close()

    reopened = SqliteProtocolStore(sqlite_path)
    try:
        assert reopened.has_identity()
        assert reopened.identity_key_pair().seed == ALICE.seed
        assert reopened.identity_key_pair().public_key == ALICE.public_key
        assert reopened.get_identity(BOB_0) == BOB.public_key
        assert reopened.get_identity(CAROL_0) == CAROL.public_key
        assert reopened.load_signed_prekey(5) == spk
        assert reopened.load_one_time_prekey(1) == opks[0]
        assert reopened.load_one_time_prekey(2) is None
        assert reopened.load_one_time_prekey(3) == opks[2]
        assert reopened.one_time_prekey_ids() == [1, 3]
        assert reopened.session_devices("bob") == [0, 7]
        assert reopened.session_devices("carol") == []
        loaded0, loaded7 = reopened.load_session(BOB_0), reopened.load_session(BOB_7)
        assert loaded0 is not None and loaded0.to_bytes() == bob0.to_bytes()
        assert loaded7 is not None and loaded7.to_bytes() == bob7.to_bytes()
        assert reopened.load_session(CAROL_0) is None
    finally:
        reopened.close()


def test_sqlite_reopen_resumes_a_session_that_was_used(sqlite_store: SqliteProtocolStore,
                                                       sqlite_path: Path) -> None:
    record = make_session(sqlite_store, BOB_0)
    record.ratchet.encrypt(b"hello", record.associated_data)
    sqlite_store.store_session(BOB_0, record)
    sqlite_store.close()
    reopened = SqliteProtocolStore(sqlite_path)
    try:
        loaded = reopened.load_session(BOB_0)
        assert loaded is not None and loaded.to_bytes() == record.to_bytes()
    finally:
        reopened.close()


def test_sqlite_identity_cannot_be_replaced(sqlite_store: SqliteProtocolStore,
                                            sqlite_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        sqlite_store.set_identity_key_pair(BOB)
    assert sqlite_store.identity_key_pair().seed == ALICE.seed
    sqlite_store.set_identity_key_pair(ALICE)  # the same identity again is fine
    sqlite_store.close()
    reopened = SqliteProtocolStore(sqlite_path)
    try:
        with pytest.raises(LocalProtocolError):
            reopened.set_identity_key_pair(BOB)
        assert reopened.identity_key_pair().seed == ALICE.seed
    finally:
        reopened.close()


def test_sqlite_without_identity(tmp_path: Path) -> None:
    store = SqliteProtocolStore(tmp_path / "empty.db")
    try:
        assert not store.has_identity()
        with pytest.raises(LocalProtocolError):
            store.identity_key_pair()
    finally:
        store.close()


def write_raw_session(path: Path, address: Address, blob: bytes) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT OR REPLACE INTO sessions (account, device, record) VALUES (?, ?, ?)",
                   (address.account, address.device_id, blob))
    db.close()


def real_record_bytes() -> bytes:
    return make_session(MemoryProtocolStore(ALICE), BOB_0).to_bytes()


@pytest.mark.parametrize("blob", [
    pytest.param(b"garbage", id="ascii"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1", id="not-msgpack"),
    pytest.param(bytes(range(256)), id="noise"),
    pytest.param(msgpack.packb([1, "x"]), id="short-array"),
    pytest.param(msgpack.packb({"v": 1}), id="map"),
    pytest.param(msgpack.packb([1, b"k" * 32, b"ad", b"not a ratchet", b"b", None]),
                 id="bad-ratchet"),
    pytest.param(real_record_bytes()[:-7], id="truncated-record"),
    pytest.param(real_record_bytes() + b"\x00", id="trailing-byte"),
    pytest.param(msgpack.packb("a record"), id="msgpack-str"),
    pytest.param(b"\x91" * 1000 + b"\xc0", id="nested-1000"),
])
def test_sqlite_garbage_session_is_malformed(sqlite_store: SqliteProtocolStore,
                                             sqlite_path: Path, blob: bytes) -> None:
    make_session(sqlite_store, BOB_1)
    sqlite_store.close()
    write_raw_session(sqlite_path, BOB_0, blob)
    reopened = SqliteProtocolStore(sqlite_path)
    try:
        assert reopened.session_devices("bob") == [0, 1]
        with pytest.raises(MalformedError):
            reopened.load_session(BOB_0)
        assert reopened.load_session(BOB_1) is not None  # other sessions still load
    finally:
        reopened.close()

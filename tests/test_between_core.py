"""The sans-IO pieces between the transports: foreign names, address translation at the
border, link statements, revocations, the shared record's codec, profiles and status updates."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2e_proto.account_link import (
    PRIVATE_SIDE,
    SOCIAL_SIDE,
    LinkMismatchError,
    LinkRevocation,
    LinkStatement,
    SharedAccount,
    SharedDevice,
    SharedProfile,
    SharedRecord,
    SharedStatus,
    SignedLinkStatement,
    StaleLinkStatementError,
)
from e2e_proto.address import Address, is_foreign, is_valid_account, qualify, split_foreign
from e2e_proto.constants import LINK_STATEMENT_MAX_AGE_MS, MAX_STATUSES, STATUS_TTL_MS
from e2e_proto.errors import (
    E2EProtoError,
    InvalidSignatureError,
    LocalProtocolError,
    MalformedError,
)
from e2e_proto.federation import check_from_peer, to_peer_view
from e2e_proto.keys import IdentityKeyPair
from e2e_proto.payload import Payload
from e2e_proto.profiles import Profile, ProfileUpdate, StatusUpdate
from e2e_proto.ratchet import RatchetMessage
from e2e_proto.wire import Envelope

AIK, SOCIAL_KEY = IdentityKeyPair(bytes(range(32))), IdentityKeyPair(bytes(range(1, 33)))
NOW = 1_700_000_000_000


def _statement(**changes: object) -> LinkStatement:
    fields: dict[str, object] = {
        "private_account": "alice", "private_key": AIK.public_key, "social_account": "bob",
        "social_device": 3, "social_key": SOCIAL_KEY.public_key, "link_id": bytes(16),
        "issued_ms": NOW}
    return LinkStatement(**{**fields, **changes})  # type: ignore[arg-type]


def test_foreign_names() -> None:
    assert qualify("bob", "social") == "bob@social" and split_foreign("bob@social") == (
        "bob", "social")
    for name in ("bob", "bob@", "@social", "bob@relay", "Bob@social", "bob@social@social",
                 "a" * 65 + "@social", 3, None):
        assert not is_foreign(name), name
    assert not is_valid_account("bob@social")  # never a local account
    with pytest.raises(LocalProtocolError):
        qualify("bob@social", "private")


def _envelope(sender: str, recipient: str) -> Envelope:
    return Envelope(Address(sender, 1), Address(recipient, 2),
                    RatchetMessage(b"header", bytes(24), bytes(16)))


def test_envelopes_cross_the_border_with_the_other_sides_names() -> None:
    out = _envelope("alice", "bob@social")
    crossed = to_peer_view(out, "private")
    assert (crossed.sender, crossed.recipient) == (Address("alice@private", 1),
                                                   Address("bob", 2))
    assert crossed.message == out.message
    check_from_peer(Envelope.decode(crossed.encode()), "social")
    for wrong in (_envelope("alice", "bob"), _envelope("alice", "bob@private"),
                  _envelope("eve@social", "bob@social")):
        with pytest.raises(LocalProtocolError):
            to_peer_view(wrong, "private")
    for wrong, side in ((crossed, "private"), (_envelope("alice@social", "bob"), "social"),
                        (_envelope("alice@private", "bob@social"), "social")):
        with pytest.raises(MalformedError):
            check_from_peer(wrong, side)


def test_a_statement_holds_only_with_both_signatures() -> None:
    signed = _statement().sign(AIK, SOCIAL_KEY)
    checked = SignedLinkStatement.verify(signed.body, signed.private_signature,
                                         signed.social_signature)
    assert checked.statement == _statement()
    checked.check_fresh(NOW + LINK_STATEMENT_MAX_AGE_MS)
    for late in (NOW + LINK_STATEMENT_MAX_AGE_MS + 1, NOW - LINK_STATEMENT_MAX_AGE_MS - 1):
        with pytest.raises(StaleLinkStatementError):
            checked.check_fresh(late)
    with pytest.raises(InvalidSignatureError):  # each signature has its own prefix
        SignedLinkStatement.verify(signed.body, signed.social_signature,
                                   signed.private_signature)
    with pytest.raises(LocalProtocolError):
        _statement().sign(SOCIAL_KEY, AIK)
    with pytest.raises(LocalProtocolError):
        _statement(social_key=AIK.public_key)


@given(st.binary(max_size=200) | st.builds(msgpack.packb, st.lists(
    st.none() | st.integers(-1, 2**64 - 1) | st.text(max_size=70) | st.binary(max_size=40),
    max_size=9)))
def test_a_malformed_statement_or_record_is_refused_cleanly(data: bytes) -> None:
    for decode in (LinkStatement.decode, SharedRecord.decode):
        try:
            decode(data)
        except MalformedError:
            pass
    with pytest.raises(E2EProtoError):
        LinkRevocation.verify(_statement(), data, bytes(64))


def test_revocations_name_their_link_and_side() -> None:
    link = _statement()
    for side, key in ((PRIVATE_SIDE, AIK), (SOCIAL_SIDE, SOCIAL_KEY)):
        revocation = LinkRevocation(link.link_id, NOW, side)
        assert LinkRevocation.verify(link, revocation.body(), revocation.sign(key)) == revocation
        with pytest.raises(InvalidSignatureError):  # the other side's key
            LinkRevocation.verify(link, revocation.body(),
                                  revocation.sign(SOCIAL_KEY if key is AIK else AIK))
    replayed = LinkRevocation(bytes([1] * 16), NOW, PRIVATE_SIDE)
    with pytest.raises(LinkMismatchError):
        LinkRevocation.verify(link, replayed.body(), replayed.sign(AIK))


def _record(statuses: int = 1, devices: int = 1) -> SharedRecord:
    return SharedRecord(SharedAccount("alice", NOW), SharedProfile("Alice", "hi"),
                        tuple(SharedStatus(f"s{i}", NOW - i) for i in range(statuses)),
                        tuple(SharedDevice(f"d{i}", None) for i in range(devices)))


def test_the_shared_record_codec_takes_its_shape_and_nothing_more() -> None:
    record = _record(MAX_STATUSES, 5)
    assert SharedRecord.decode(record.encode()) == record
    fields = msgpack.unpackb(record.encode())
    for changed in ([*fields, "extra"], fields[:4], [*fields[:2], ["Alice", "hi", "x"],
                                                     *fields[3:]],
                    [*fields[:3], [*fields[3], ["s", NOW]], fields[4]],
                    [*fields[:4], [*fields[4], ["d5", None]]],
                    [2, *fields[1:]]):
        with pytest.raises(MalformedError):
            SharedRecord.decode(msgpack.packb(changed))
    with pytest.raises(LocalProtocolError):
        SharedRecord(SharedAccount("alice", NOW), SharedProfile("A", ""),
                     ("a message",), ())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        _record(MAX_STATUSES + 1)


def test_profiles_and_status_updates() -> None:
    update = ProfileUpdate(Profile("Alice", "line\nbreak"), 3)
    payload = update.to_payload(NOW)
    assert payload.kind == "profile"
    assert ProfileUpdate.from_payload(Payload.decode(payload.encode())) == update
    for name, about in (("a\nb", ""), ("x" * 65, ""), ("", "x" * 501), ("\x1b[31m", "")):
        with pytest.raises(LocalProtocolError):
            Profile(name, about)
    bad = Payload.new("profile", NOW, name="Alice", about="", version=0)
    with pytest.raises(MalformedError):
        ProfileUpdate.from_payload(bad)
    status = StatusUpdate("out for lunch", NOW)
    assert StatusUpdate.from_payload(status.to_payload()) == status
    assert status.live_at(NOW) and status.live_at(NOW + STATUS_TTL_MS - 1)
    assert not status.live_at(NOW + STATUS_TTL_MS)
    assert not StatusUpdate("from the future", NOW + 2 * STATUS_TTL_MS).live_at(NOW)
    with pytest.raises(LocalProtocolError):
        StatusUpdate("", NOW)

"""The checks every server makes on the envelopes a request carries (``sent_envelopes``), those
both servers make on cross-transport envelopes, and the peer options."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_proto.address import Address
from e2e_proto.federation import to_peer_view
from e2e_proto.ratchet import RatchetMessage
from e2e_proto.wire import Envelope
from server.calls.keyfile import write_key_file
from server.common.fields import sent_envelopes
from server.common.requests import RequestError
from server.federation.envelopes import check_delivery, mismatch_details, split_send
from server.relay.main import main as relay_main
from server.social.main import main as social_main

ME = Address("alice", 1)


def _envelope(sender: Address, recipient: Address, size: int = 16) -> bytes:
    return Envelope(sender, recipient, RatchetMessage(b"h", bytes(24), bytes(size))).encode()


def test_a_requests_envelopes_are_counted_sized_decoded_and_from_the_sender(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one loop of send, group_deliver, call_signal, the social send and the cross-transport
    checks: the list's length first (nothing is decoded past the bound), then each envelope's
    type, size (its own code, with ``limit``), form and sender."""
    decoded: list[bytes] = []
    decode = Envelope.decode
    monkeypatch.setattr(Envelope, "decode", lambda data: decoded.append(data) or decode(data))
    good = [_envelope(ME, Address("bob", d)) for d in range(3)]
    got = sent_envelopes(good, ME, 3, 100, code="bad", too_large="big")
    assert [(e.recipient, data) for e, data in got] == [
        (Address("bob", d), data) for d, data in enumerate(good)]
    large = _envelope(ME, Address("bob", 3), size=200)
    for raw, code, read in (
            ([*good, good[0]], "bad", 0),  # one too many: none is read
            ([large] * 4, "bad", 0),
            ("envelopes", "bad", 0), (None, "bad", 0),
            ([good[0], large], "big", 1),  # sized before it is read
            ([good[0], "text"], "bad", 1),
            ([b"not an envelope"], "bad", 1),
            ([_envelope(Address("eve", 0), Address("bob", 0))], "bad", 1)):
        decoded.clear()
        with pytest.raises(RequestError) as refused:
            sent_envelopes(raw, ME, 3, 100, code="bad", too_large="big")
        assert (refused.value.code, len(decoded)) == (code, read), raw
        if code == "big":
            assert refused.value.details == {"limit": 100}


def test_a_cross_send_covers_this_accounts_other_devices_exactly() -> None:
    raw = [_envelope(ME, Address("bob@social", 3)), _envelope(ME, Address("alice", 0)),
           _envelope(ME, Address("alice", 2))]
    own, foreign = split_send(raw, ME, [0, 1, 2], "bob@social")
    assert [(a, d) for a, d, _ in own] == [("alice", 0), ("alice", 2)]
    assert [e.recipient for e in foreign] == [Address("bob@social", 3)]
    with pytest.raises(RequestError) as mismatch:
        split_send(raw[:2], ME, [0, 1, 2], "bob@social")
    assert mismatch.value.code == "device_mismatch"
    assert mismatch.value.details == {"missing": [["alice", 2]], "stale": []}
    for bad in ([_envelope(Address("eve", 0), Address("bob@social", 3))],  # not this device
                [_envelope(ME, Address("carol", 0))],  # neither the recipient nor alice
                [_envelope(ME, Address("alice", 0))],  # nothing for the recipient
                [raw[0], raw[0]],  # twice to one device
                [_envelope(ME, Address("bob@social", 3), size=20_000)],  # too large
                [b"not an envelope"], [], "nope"):
        with pytest.raises(RequestError) as refused:
            split_send(bad, ME, [1], "bob@social")
        assert refused.value.code == "bad_request", bad


def test_a_delivery_reaches_exactly_the_recipients_devices() -> None:
    sender = Address("alice@private", 1)
    crossed = [to_peer_view(Envelope.decode(_envelope(ME, Address("bob@social", d))), "private")
               .encode() for d in (0, 4)]
    stored = check_delivery(crossed, sender, "bob", [0, 4], "social")
    assert [(a, d) for a, d, _ in stored] == [("bob", 0), ("bob", 4)]
    with pytest.raises(RequestError) as mismatch:
        check_delivery(crossed, sender, "bob", [0, 4, 5], "social")
    assert mismatch.value.details == {"missing": [["bob", 5]], "stale": []}
    assert mismatch_details(mismatch.value.details, "bob@social", "bob") == {
        "missing": [["bob@social", 5]], "stale": []}
    for wrong_sender, recipient, side in ((Address("mallory@private", 1), "bob", "social"),
                                          (sender, "carol", "social"), (sender, "bob", "private")):
        with pytest.raises(RequestError) as refused:
            check_delivery(crossed, wrong_sender, recipient, [0, 4], side)
        assert refused.value.code == "bad_request"
    untranslated = [_envelope(ME, Address("bob@social", 0))]  # the relay did not rewrite it
    with pytest.raises(RequestError):
        check_delivery(untranslated, sender, "bob", [0], "social")


def test_the_peer_options_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert relay_main(["serve", "--peer-listen", "127.0.0.1:1"]) == 2
    assert "go together" in capsys.readouterr().err
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    assert social_main(["serve", "--peer-listen", "127.0.0.1:1", "--peer-relay",
                        "127.0.0.1:2", "--peer-key-file", str(bad_key)]) == 2
    assert "peer-keygen" in capsys.readouterr().err
    key = tmp_path / "peer.key"
    write_key_file(key)
    assert relay_main(["serve", "--peer-listen", "127.0.0.1:1", "--peer-social", "127.0.0.1:2",
                       "--peer-social", "127.0.0.1:3", "--peer-key-file", str(key)]) == 2
    assert "at most 1 address of the other server" in capsys.readouterr().err  # one social server

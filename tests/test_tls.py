"""TLS on the relay, with certificates from trustme: verified, refused, and --insecure."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from client.cli.main import main as cli_main
from client.core.connection import ConnectionLost, client_tls_context
from tests.relay_harness import drain, make_client, register, session_of, start_relay


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_verified_tls_round_trip(nursery, tmp_path: Path, ca: trustme.CA) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db", tls=server_context(ca))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = client_tls_context(str(ca_file))
    alice = make_client(tmp_path / "alice", relay.port, tls)
    bob = make_client(tmp_path / "bob", relay.port, tls)
    await register(alice, "alice")
    await register(bob, "bob")
    async with session_of(alice) as a:
        await a.send_text("bob", "over TLS")
    assert [m.text for m in await drain(bob)] == ["over TLS"]


async def test_unknown_ca_is_refused(nursery, tmp_path: Path, ca: trustme.CA) -> None:
    relay = await start_relay(nursery, tmp_path / "relay.db", tls=server_context(ca))
    other = trustme.CA()
    other_file = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(other_file))
    client = make_client(tmp_path / "alice", relay.port, client_tls_context(str(other_file)))
    with pytest.raises(ConnectionLost, match="TLS"):
        await register(client, "alice")
    insecure = make_client(tmp_path / "dev", relay.port, client_tls_context(insecure=True))
    await register(insecure, "dev")  # --insecure: local development only


def test_cli_reports_a_missing_ca_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["--home", str(tmp_path / "h"), "--ca", str(tmp_path / "nope.pem"),
                     "register", "alice"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("e2e-chat: cannot load the CA file") and err.count("\n") == 1

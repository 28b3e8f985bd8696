"""``e2e-relay serve`` refusing to start: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.fault_support import ROOT, free_port


def serve(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.relay.main", "serve", *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_no_redis_there_is_exit_2(tmp_path: Path) -> None:
    done = serve("--listen", "127.0.0.1:0", "--store", f"redis://127.0.0.1:{free_port()}/0",
                 "--blob-dir", str(tmp_path / "blobs"))
    assert done.returncode == 2
    assert done.stderr.startswith("e2e-relay: cannot open redis://127.0.0.1:")
    assert len(done.stderr.splitlines()) == 1


def test_a_relay_on_redis_needs_a_shared_blob_folder() -> None:
    done = serve("--listen", "127.0.0.1:0", "--store", f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 2
    assert done.stderr == ("e2e-relay: a relay on Redis needs --blob-dir DIR, a folder that "
                           "every relay node on that Redis shares\n")


def test_address_in_use_is_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "relay.db"))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"e2e-relay: cannot listen on 127.0.0.1:{port}: "
                                            "[Errno 98] Address already in use")
    assert "Traceback" not in done.stderr


def test_store_and_db_are_one_choice(tmp_path: Path) -> None:
    done = serve("--db", str(tmp_path / "a.db"), "--store", f"sqlite:{tmp_path / 'b.db'}")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    done = serve("--store", "postgres://x")
    assert done.returncode == 2 and "expected sqlite:PATH or redis://HOST:PORT/DB" in done.stderr


def test_a_registration_rate_must_be_above_zero(tmp_path: Path) -> None:
    """0 would let one registration through per address and then refuse for ever."""
    for rate in ("0", "-3", "inf", "many"):
        done = serve("--db", str(tmp_path / "relay.db"), "--registrations-per-hour", rate)
        assert done.returncode == 2 and "--registrations-per-hour" in done.stderr
        assert not (tmp_path / "relay.db").exists()

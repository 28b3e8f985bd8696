"""A real ``redis-server`` for the tests: its own folder, a free loopback port, durable AOF.

Started with ``appendonly yes`` and ``appendfsync always`` (an acknowledged write survives a
crash, as with SQLite) and no RDB snapshots; killed with SIGKILL and restarted on the same folder
and port by the fault tests. Redis >= 7 is required (Debian 12's ``redis-server`` is 7.0); a
missing or older one fails the test run, it is never skipped (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.fault_support import free_port

START_TIMEOUT = 20.0


def redis_server_binary() -> str:
    """The path of a ``redis-server`` >= 7; fails the test run when there is none."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run "
                    "installs it)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found is None or int(found.group(1)) < 7:
        pytest.fail(f"the relay needs redis-server >= 7, found: {version.strip()}")
    return path


class RedisServer:
    """``redis-server`` as a child process in ``folder`` on 127.0.0.1:``port``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        """The relay's ``--store`` for database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start it (again, on the same folder: it loads its AOF) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (the child writes to it)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail("redis-server did not start: "
                            + (self.folder / "redis.log").read_text()[-2000:])
            time.sleep(0.02)  # polling a starting process, bounded by the deadline

    def _inline(self, command: bytes) -> bytes:
        """Send one inline command (as ``redis-cli`` and ``telnet`` can); its first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe:
            probe.sendall(command + b"\r\n")
            return probe.recv(256)

    def _answers_ping(self) -> bool:
        """Whether it answers PING with PONG (not LOADING) right now."""
        try:
            return self._inline(b"PING").startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL it (if it runs) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def flush(self) -> None:
        """Delete every key of every database (between tests that share this server)."""
        assert self._inline(b"FLUSHALL").startswith(b"+OK")

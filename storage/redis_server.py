"""A local ``redis-server`` in a folder of its own, durable: what the relay's Redis store runs on
in the tests and the benchmarks.

Started on 127.0.0.1 with ``appendonly yes`` and ``appendfsync always`` (an acknowledged write
is fsynced before Redis answers, so it survives a crash, as a SQLite commit does) and no RDB
snapshots. It can be SIGKILLed and started again on the same folder and port: it then loads its
AOF. Needs ``redis-server`` >= 7 on the PATH (Debian: ``apt-get install redis-server``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

MIN_VERSION = 7
START_TIMEOUT = 20.0


class RedisServerError(RuntimeError):
    """No usable ``redis-server`` here, or it did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_server_binary() -> str:
    """The path of a ``redis-server`` >= 7 (:class:`RedisServerError` when there is none)."""
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerError("redis-server is not installed (Debian: apt-get install "
                               "redis-server; .ci/run installs it)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    if found is None or int(found.group(1)) < MIN_VERSION:
        raise RedisServerError(f"the relay needs redis-server >= {MIN_VERSION}, found: "
                               f"{version.strip()}")
    return path


class LocalRedis:
    """``redis-server`` as a child process in ``folder`` on 127.0.0.1:``port`` (started here),
    with ``options`` added to its command line."""

    def __init__(self, folder: Path, port: int | None = None, options: Sequence[str] = ()
                 ) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.options = list(options)
        self.binary = redis_server_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        """The relay's ``--store`` for database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start it (again, on the same folder: it loads its AOF) and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
                 "--save", "", "--daemonize", "no", *self.options], stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RedisServerError("redis-server did not start: "
                                       + (self.folder / "redis.log").read_text()[-2000:])
            time.sleep(0.02)  # polling a starting process, bounded by the deadline

    def _inline(self, command: bytes) -> bytes:
        """Send one inline command (as ``redis-cli`` can); the start of the reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe:
            probe.sendall(command + b"\r\n")
            return probe.recv(256)

    def _answers_ping(self) -> bool:
        """Whether it answers PING with PONG (not LOADING) right now."""
        try:
            return self._inline(b"PING").startswith(b"+PONG")
        except OSError:
            return False

    def append_only_bytes(self) -> bytes:
        """What its append-only files hold now, as bytes (what a look at the disk finds)."""
        folder = self.folder / "appendonlydir"
        return b"".join(path.read_bytes() for path in sorted(folder.iterdir())
                        if path.is_file()) if folder.exists() else b""

    def flush(self) -> None:
        """Delete every key of every database."""
        if not self._inline(b"FLUSHALL").startswith(b"+OK"):
            raise RedisServerError("FLUSHALL failed")

    def kill(self) -> None:
        """SIGKILL it (if it runs) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

"""Daemon test helpers: ``e2e-chat daemon`` as a child process, and a blocking JSON-RPC client
of its socket (standard library only, every read bounded by a timeout)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fault_support import ROOT

TIMEOUT = 60.0


def chat(port: int, home: Path, *args: str, stdin: str = "",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``e2e-chat --home HOME --relay 127.0.0.1:PORT ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "client.cli.main", "--home", str(home), "--relay",
         f"127.0.0.1:{port}", *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
        timeout=TIMEOUT, env=env)


class DaemonProcess:
    """``e2e-chat --home HOME daemon`` in a child process; ready once it logs that it serves."""

    def __init__(self, home: Path, relay_port: int, *options: str,
                 env: dict[str, str] | None = None) -> None:
        self.home = home
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "client.cli.main", "--home", str(home), "--relay",
             f"127.0.0.1:{relay_port}", "daemon", *options],
            cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(TIMEOUT):
            self.kill()
            pytest.fail("the daemon did not start: " + "".join(self.lines))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "ready: serving" in line:
                self._ready.set()
        self._ready.set()  # it ended: the caller sees the lines

    @property
    def socket(self) -> Path:
        """The daemon's Unix socket."""
        return self.home / "daemon.sock"

    def connect(self) -> LineRpc:
        """A new client of the daemon."""
        return LineRpc.unix(self.socket)

    def stop(self) -> int:
        """SIGTERM the daemon and wait for it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT)

    def kill(self) -> None:
        """SIGKILL the daemon (if it still runs) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT)


class LineRpc:
    """A blocking JSON-RPC client over a stream socket; notifications are kept in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self._buffer = b""
        self._next_id = 0
        self.notifications: list[dict[str, Any]] = []

    @classmethod
    def unix(cls, path: Path) -> LineRpc:
        """Connect to a Unix socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        return cls(sock)

    def send_line(self, data: bytes) -> None:
        """Send raw bytes (a line with its ``\\n``)."""
        self.sock.sendall(data)

    def read_message(self) -> dict[str, Any] | list[Any] | None:
        """The next message from the daemon; None once it closed the connection."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def answer(self, request_id: object) -> dict[str, Any]:
        """The answer with ``request_id`` (notifications meanwhile are kept)."""
        while True:
            message = self.read_message()
            if message is None:
                raise ConnectionError("the daemon closed the connection")
            if isinstance(message, dict) and "method" in message:
                self.notifications.append(message)
            elif isinstance(message, dict) and message.get("id") == request_id:
                return message

    def request(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method``; the whole answer (``result`` or ``error``)."""
        self._next_id += 1
        self.send_line(json.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                                   "params": params}).encode() + b"\n")
        return self.answer(self._next_id)

    def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; its result (the test fails on an error)."""
        answer = self.request(method, **params)
        assert "result" in answer, answer
        return answer["result"]

    def notification(self) -> dict[str, Any]:
        """The next notification."""
        if self.notifications:
            return self.notifications.pop(0)
        while True:
            message = self.read_message()
            if message is None:
                raise ConnectionError("the daemon closed the connection")
            if isinstance(message, dict) and "method" in message:
                return message

    def events_until_caught_up(self) -> list[dict[str, Any]]:
        """Subscribe; every notification before ``caught_up``."""
        self.call("subscribe")
        events = []
        while (note := self.notification())["method"] != "caught_up":
            events.append(note)
        return events

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def wait_until(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` (a socket or process query, not a timer) until true, or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a bounded poll on the daemon's answers

"""A business inbox deployed as a person would: relay and social server processes, the
business's phone (the primary of its private account, and a device of its social account),
the inbox home linked to the one and logged in to the other, an agent, ``e2e-business serve``
as a process; customers are ``e2e-chat`` processes with homes of their own. Also a headless
Chromium (Debian's, driven by Playwright) with the flags a root user needs.
"""

from __future__ import annotations

import binascii
import os
import signal
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fault_support import ROOT, RelayProcess, SocialProcess, free_port

BUSINESS = "shop"
AGENT, AGENT_PASSWORD = "ann", "agent password 1"
SOCIAL_PASSWORD = "shop social password"
INBOX_PASSPHRASE = "inbox at-rest passphrase"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def png(width: int, height: int) -> bytes:
    """A small RGB PNG (a colour gradient), made with zlib alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", binascii.crc32(kind + data)))

    rows = b"".join(b"\x00" + b"".join(bytes((40 + x * 2 % 200, 90 + y % 120, 200))
                                       for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass
class Deployment:
    """The running servers and the inbox; :meth:`chat` runs a customer's command."""

    root: Path
    relay: int
    social: int
    inbox_port: int = 0
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    inbox_log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The inbox's address."""
        return f"http://127.0.0.1:{self.inbox_port}"

    def _servers(self) -> list[str]:
        return ["--relay", f"127.0.0.1:{self.relay}", "--social", f"127.0.0.1:{self.social}"]

    def chat(self, home: str, *args: str, social: bool = False, stdin: str = "",
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """``e2e-chat`` in ``root/home`` (``--transport social`` with ``social``)."""
        transport = ["--transport", "social"] if social else []
        done = subprocess.run(
            [sys.executable, "-m", "client.cli.main", "--home", str(self.root / home),
             *self._servers(), *transport, *args], cwd=ROOT, input=stdin, capture_output=True,
            text=True, timeout=120, env={**os.environ, "E2E_PASSWORD": SOCIAL_PASSWORD})
        if check:
            assert done.returncode == 0, (args, done.stderr)
        return done

    def business(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``e2e-business`` on the inbox home."""
        done = subprocess.run(self._business_command(*args), cwd=ROOT, input=stdin,
                              capture_output=True, text=True, timeout=120, env=self._env())
        assert done.returncode == 0, (args, done.stderr)
        return done

    def _business_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "client.business.main", "--home",
                str(self.root / "inbox"), *self._servers(), *args]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "E2E_PASSWORD": SOCIAL_PASSWORD,
                "E2E_PASSPHRASE": INBOX_PASSPHRASE}

    def link_inbox(self) -> None:
        """``e2e-business link shop``, approved on the phone with the code it prints."""
        waiting = subprocess.Popen(self._business_command("link", BUSINESS), cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=self._env())
        assert waiting.stdout is not None
        code = None
        for line in waiting.stdout:
            if line.startswith("link code: "):
                code = line.split()[-1]
                break
        assert code is not None, waiting.stderr.read() if waiting.stderr else ""
        self.chat("phone", "approve", code)
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
        assert f"linked as {BUSINESS} device 1" in out

    def start_inbox(self) -> None:
        """``e2e-business serve`` on a free loopback port; returns once it listens."""
        self.inbox_port = free_port()
        process = subprocess.Popen(
            self._business_command("serve", "--http", f"127.0.0.1:{self.inbox_port}"),
            cwd=ROOT, stderr=subprocess.PIPE, text=True, env=self._env())
        self.processes.append(process)
        ready = threading.Event()

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self.inbox_log.append(line)
                if "inbox listening on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            pytest.fail("the inbox did not start: " + "".join(self.inbox_log))

    def stop(self) -> None:
        """Stop the inbox (SIGINT, as Ctrl-C) and the servers."""
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def deployed(root: Path) -> Iterator[Deployment]:
    """Servers, the business (phone, inbox linked and logged in, agent ann) and the inbox."""
    relay_port, social_port = free_port(), free_port()
    relay = RelayProcess(root / "relay.db", relay_port)
    social = SocialProcess(root / "social.db", social_port)
    deployment = Deployment(root, relay_port, social_port)
    try:
        deployment.chat("phone", "register", BUSINESS)
        deployment.chat("phone-social", "register", BUSINESS, social=True)
        deployment.link_inbox()
        deployment.business("login", BUSINESS)
        deployment.business("agent", "add", AGENT, stdin=AGENT_PASSWORD + "\n")
        deployment.start_inbox()
        yield deployment
    finally:
        deployment.stop()
        relay.kill()
        social.kill()

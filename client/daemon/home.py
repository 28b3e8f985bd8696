"""Who uses a home: the daemon's locks, its socket and its bearer token, all files in the home.

Two ``flock`` locks, released by the kernel when their process ends however it ends (a
crashed daemon leaves nothing to clean up):

- ``daemon.lock``, held exclusively by the one daemon of the home (its pid written inside):
  a second daemon fails to take it and is refused;
- ``home.lock``, held exclusively by the daemon and shared by every direct ``e2e-chat``
  command while it runs: a command that cannot share it knows a daemon serves the home and
  forwards itself to ``daemon.sock`` instead of opening the state (no two processes ever
  write one home's state), and a daemon starting while commands run waits for them to end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import ClientError

DAEMON_LOCK = "daemon.lock"
HOME_LOCK = "home.lock"
SOCKET_FILE = "daemon.sock"
TOKEN_FILE = "daemon.token"
MAX_UNIX_PATH = 107
"""The longest Unix socket path Linux binds (108 bytes with the terminating NUL)."""


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class DaemonLocks:
    """The daemon's hold on a home: both locks, for as long as it runs."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._fds: list[int] = []

    def acquire(self) -> None:
        """Take both locks; :class:`ClientError` when another daemon serves the home.

        Waits (saying so on stderr) while direct ``e2e-chat`` commands use the home.
        """
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        daemon = _open_lock(self.home / DAEMON_LOCK)
        self._fds.append(daemon)
        if not _try_lock(daemon, fcntl.LOCK_EX):
            pid = os.pread(daemon, 32, 0).decode(errors="replace").strip()
            os.close(daemon)  # not release(): the pid in the file is the other daemon's
            self._fds.clear()
            running = f" (pid {pid})" if pid.isdigit() else ""
            raise ClientError(f"a daemon{running} already serves {self.home}; stop it first")
        os.ftruncate(daemon, 0)
        os.pwrite(daemon, f"{os.getpid()}\n".encode(), 0)
        home = _open_lock(self.home / HOME_LOCK)
        self._fds.append(home)
        if not _try_lock(home, fcntl.LOCK_EX):
            print(f"e2e-chat: waiting for the e2e-chat commands using {self.home} to end",
                  file=sys.stderr, flush=True)
            fcntl.flock(home, fcntl.LOCK_EX)

    def release(self) -> None:
        """Let go of the locks (the pid is cleared first)."""
        if self._fds:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fds[0], 0)
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


@contextlib.contextmanager
def command_guard(home: Path) -> Iterator[bool]:
    """Around one direct ``e2e-chat`` command: yields True when a daemon serves ``home`` (the
    command is to be forwarded), else False while holding ``home.lock`` shared, so no daemon
    starts until the command ends. A home that does not exist yet has no daemon."""
    if not home.is_dir():
        yield False
        return
    try:
        fd = _open_lock(home / HOME_LOCK)
    except OSError:  # a home this user cannot write: the command says so itself
        yield False
        return
    try:
        yield not _try_lock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def socket_path(home: Path) -> Path:
    """The daemon's Unix socket; :class:`ClientError` if the path is too long to bind."""
    path = home.absolute() / SOCKET_FILE
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ClientError(f"the socket path {path} is longer than {MAX_UNIX_PATH} bytes: use a "
                          "home with a shorter path")
    return path


def bearer_token(home: Path) -> str:
    """The TCP and HTTP bearer token in ``HOME/daemon.token`` (mode 0600), made on first use."""
    path = home / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise ClientError(f"{path} is empty: delete it to make a new token") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token

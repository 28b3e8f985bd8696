"""What both transports' command lines share: the program name, error lines, exit codes and TLS.

Used by :mod:`client.cli.main` (the private transport) and :mod:`client.cli.social`.
"""

from __future__ import annotations

import argparse
import math
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import trio

from e2e_proto.capabilities import UnsupportedFeatureError

from ..core.connection import ConnectionLost, ServerError, client_tls_context
from ..core.errors import ClientError
from ..core.files import FileRecord

PROG = "e2e-chat"
BACKOFF_START, BACKOFF_MAX = 0.5, 10.0


class ChatSession(Protocol):
    """A session that receives in the background and sends text to a name."""

    async def receive(self, handler: Callable[[Any], Awaitable[None] | None],
                      wait: float | None = None, /) -> None:
        """Show what arrives for ``wait`` seconds."""
        ...

    async def send_text(self, name: str, text: str, /) -> Any:
        """Send one message to ``name``."""
        ...


def human_size(size: int) -> str:
    """``1.5 MiB``, ``12 KiB``, ``7 B``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def file_line(record: FileRecord) -> str:
    """``[file NAME, SIZE, MIME] PATH``, or why it is not saved and how to retry."""
    media = record.media
    what = f"[file {media.name or 'attachment'}, {human_size(media.size)}, {media.mime}]"
    if record.path is not None:
        return f"{what} {record.path}"
    reason = record.error or "not downloaded yet"
    return f"{what} not saved: {reason}; retry with: {PROG} fetch-file {record.message}"


def file_json(record: FileRecord) -> dict[str, object]:
    """The ``--json`` fields of a file: ``path``, ``size``, ``mime``, ``sha256``, ``name``,
    ``error`` (``path`` and ``sha256`` are null until it is saved)."""
    return {"path": record.path, "size": record.media.size, "mime": record.media.mime,
            "sha256": None if record.sha256 is None else record.sha256.hex(),
            "name": record.media.name, "error": record.error}


def tls_from_args(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context the global options ask for (--tls, --ca, --insecure), or None for TCP."""
    if not (args.tls or args.ca or args.insecure):
        return None
    if args.insecure:
        print(f"{PROG}: warning: --insecure: the server's certificate is not checked",
              file=sys.stderr)
    return client_tls_context(args.ca, args.insecure)


def first_leaf(error: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def user_error_line(error: BaseException, server: str) -> str | None:
    """A user's error as the one line shown after ``e2e-chat: ``; None for anything else.

    ``server`` names the server in a refusal: ``the relay refused: ... (code)``.
    """
    if isinstance(error, (ClientError, ConnectionLost, UnsupportedFeatureError)):
        return str(error)
    if isinstance(error, ServerError):
        return f"the {server} refused: {error} ({error.code})"
    return None


def user_error_exit(error: BaseException, server: str) -> int | None:
    """Print a user's error as one line and return the exit code; None for anything else.

    ``server`` names the server in a refusal: ``e2e-chat: the relay refused: ... (code)``.
    An interrupt exits with 130 and prints nothing.
    """
    line = user_error_line(error, server)
    if line is not None:
        print(f"{PROG}: {line}", file=sys.stderr)
        return 1
    if isinstance(error, KeyboardInterrupt):
        return 130
    return None


def print_whoami(account: str, device_id: int) -> None:
    """The output of ``whoami``."""
    print(f"{account} (device {device_id})")


def print_fetched(path: str | None, error: str | None) -> None:
    """The output of ``fetch-file``: where the file is; :class:`ClientError` with ``error``
    when it was not saved."""
    if path is None:
        raise ClientError(f"the file was not saved: {error}")
    print(path)


def print_chat_banner(name: str) -> None:
    """The first line of ``chat`` (``name``: the account or group chatted with)."""
    print(f"chatting with {name}; type a message and Enter, /quit to leave", flush=True)


def only_leaf(error: BaseException) -> BaseException:
    """The one exception inside nested groups, or the group itself when there are several."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


class ClosableState(Protocol):
    """A client's local state: opened from a home folder, closed when the command ends."""

    def close(self) -> None:
        """Close the database."""
        ...


StateT = TypeVar("StateT", bound=ClosableState)


def run_with_state(home: str | os.PathLike[str],
                   open_state: Callable[[str | os.PathLike[str], str | None], StateT],
                   command: Callable[[StateT], int], server: str,
                   unwrap: Callable[[BaseException], BaseException] = first_leaf) -> int:
    """Open the state in ``home``, run ``command`` on it, close it; the process exit code.

    The state is sealed with ``$E2E_PASSPHRASE`` when it is set. A state that cannot be opened
    and a user's error (found by ``unwrap`` inside exception groups; see
    :func:`user_error_exit`) are one line each; anything else is a bug and propagates.
    """
    try:
        state = open_state(home, os.environ.get("E2E_PASSPHRASE") or None)
    except Exception as exc:  # unwritable home, a file that is not a database, ...
        print(f"{PROG}: cannot open {home}: {exc}", file=sys.stderr)
        return 1
    try:
        return command(state)
    except BaseException as error:  # a user's error is one line; anything else is a bug
        code = user_error_exit(unwrap(error), server)
        if code is None:
            raise
        return code
    finally:
        state.close()


async def chat_lines(session: ChatSession, name: str,
                     show: Callable[[Any], Awaitable[None] | None],
                     send: Callable[[Any, str], Awaitable[object]] | None = None) -> None:
    """Show what arrives while sending each line of stdin to ``name`` (with ``send``, when
    given, instead of ``send_text``); ends at /quit or EOF."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.receive, show, math.inf)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line or line.strip() == "/quit":
                nursery.cancel_scope.cancel()
                return
            if line.strip() and send is not None:
                await send(session, line.rstrip("\n"))
            elif line.strip():
                await session.send_text(name, line.rstrip("\n"))


SessionT = TypeVar("SessionT")


async def reconnecting(open_session: Callable[[], AbstractAsyncContextManager[SessionT]],
                       wait: float, work: Callable[[SessionT], Awaitable[None]]) -> None:
    """Run ``work`` on a session for ``wait`` seconds, reconnecting with backoff on loss.

    A lost connection may arrive bare or inside an exception group (from a nursery, as in
    ``chat``); either way it means reconnecting.
    """
    delay = BACKOFF_START
    with trio.move_on_after(wait):
        while True:
            try:
                async with open_session() as session:
                    delay = BACKOFF_START
                    await work(session)
                    return
            except* ConnectionLost as group:
                print(f"{PROG}: {first_leaf(group)}; reconnecting in {delay:g}s",
                      file=sys.stderr, flush=True)
            await trio.sleep(delay)  # backoff between reconnection attempts
            delay = min(delay * 2, BACKOFF_MAX)


ChatSessionT = TypeVar("ChatSessionT", bound=ChatSession)


async def chat(open_session: Callable[[], AbstractAsyncContextManager[ChatSessionT]], name: str,
               show: Callable[[Any], Awaitable[None] | None],
               prepare: Callable[[ChatSessionT], Awaitable[object]],
               send: Callable[[ChatSessionT, str], Awaitable[object]] | None = None) -> int:
    """The ``chat`` command: stdin's lines to ``name``, what arrives shown, until /quit or EOF.

    ``prepare`` runs on every (re)connected session before the first line (fetching ``name``'s
    devices or conversation); a lost connection means reconnecting with backoff. ``send``
    replaces ``session.send_text(name, line)`` (a private group's chat).
    """
    print_chat_banner(name)

    async def session_work(session: ChatSessionT) -> None:
        await prepare(session)
        await chat_lines(session, name, show, send)

    await reconnecting(open_session, math.inf, session_work)
    return 0


async def receive_command(open_session: Callable[[], AbstractAsyncContextManager[ChatSessionT]],
                          wait: float | None,
                          show: Callable[[Any], Awaitable[None] | None]) -> int:
    """The ``recv`` command: show what is queued; or for ``wait`` seconds what arrives,
    reconnecting with backoff on loss."""
    if wait is None:
        async with open_session() as session:
            await session.receive(show)
    else:
        await reconnecting(open_session, wait, lambda s: s.receive(show, math.inf))
    return 0

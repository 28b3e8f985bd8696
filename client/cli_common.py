"""What both transports' command lines share: the program name, error lines, exit codes and TLS.

Used by :mod:`client.cli` (the private transport) and :mod:`client.social_cli`.
"""

from __future__ import annotations

import argparse
import math
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import trio

from e2e_proto.capabilities import UnsupportedFeatureError

from .connection import ConnectionLost, ServerError, client_tls_context
from .private import ClientError

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


def user_error_exit(error: BaseException, server: str) -> int | None:
    """Print a user's error as one line and return the exit code; None for anything else.

    ``server`` names the server in a refusal: ``e2e-chat: the relay refused: ... (code)``.
    An interrupt exits with 130 and prints nothing.
    """
    if isinstance(error, (ClientError, ConnectionLost, UnsupportedFeatureError)):
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    if isinstance(error, ServerError):
        print(f"{PROG}: the {server} refused: {error} ({error.code})", file=sys.stderr)
        return 1
    if isinstance(error, KeyboardInterrupt):
        return 130
    return None


async def chat_lines(session: ChatSession, name: str,
                     show: Callable[[Any], Awaitable[None] | None]) -> None:
    """Show what arrives while sending each line of stdin to ``name``; ends at /quit or EOF."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.receive, show, math.inf)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line or line.strip() == "/quit":
                nursery.cancel_scope.cancel()
                return
            if line.strip():
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

"""The servers' call options: a forwarding unit inside the process, or one elsewhere.

    e2e-relay serve ... --sfu 127.0.0.1:7600                  # a unit in this process
    e2e-relay serve ... --sfu-address sfu.example:7600 --sfu-key-file sfu.key   # e2e-sfu's

With neither, the server refuses calls (``calls_unavailable``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from e2e_proto.constants import CALL_KEY_SIZE
from e2e_proto.primitives import system_random

from ..common.serving import parse_host_port
from .keyfile import KeyFileError, read_key_file
from .registry import SfuGrant
from .sfu import Sfu

_WILDCARDS = ("0.0.0.0", "::", "")


class CallSetupError(Exception):
    """The call options do not fit together, or the unit cannot listen."""


@dataclass
class CallSetup:
    """What the options give: the unit's address and key for tokens, and a unit to run."""

    grant: SfuGrant | None = None
    unit: Sfu | None = None
    tasks: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.grant is None:
            return "calls off (no --sfu)"
        where = "in this process" if self.unit is not None else "external"
        return f"calls through the forwarding unit at {self.grant.address} ({where})"


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sfu``, ``--sfu-address`` and ``--sfu-key-file``."""
    parser.add_argument("--sfu", type=parse_host_port, metavar="HOST:PORT",
                        help="run a call forwarding unit (UDP) in this process, listening here")
    parser.add_argument("--sfu-address", type=parse_host_port, metavar="HOST:PORT",
                        help="the forwarding unit's address as clients reach it (an "
                        "'e2e-sfu serve' elsewhere; default: the --sfu address)")
    parser.add_argument("--sfu-key-file", metavar="FILE",
                        help="the key shared with the forwarding unit (needed with "
                        "--sfu-address; with --sfu a fresh key is made when absent)")


def call_setup(args: argparse.Namespace) -> CallSetup:
    """The unit's grant (and a bound unit to run, with ``--sfu``); :class:`CallSetupError`."""
    if args.sfu is None and args.sfu_address is None:
        if args.sfu_key_file:
            raise CallSetupError("--sfu-key-file needs --sfu or --sfu-address")
        return CallSetup()
    try:
        key = (read_key_file(args.sfu_key_file) if args.sfu_key_file
               else system_random(CALL_KEY_SIZE))
    except KeyFileError as exc:
        raise CallSetupError(str(exc)) from None
    if args.sfu is None:
        if not args.sfu_key_file:
            raise CallSetupError("--sfu-address needs --sfu-key-file (the key e2e-sfu has)")
        host, port = args.sfu_address
        return CallSetup(SfuGrant(host, port, key))
    unit = Sfu(key)
    try:
        bound = unit.bind(*args.sfu)
    except OSError as exc:
        raise CallSetupError(f"the forwarding unit cannot listen on {args.sfu[0]}:"
                             f"{args.sfu[1]}: {exc.strerror or exc}") from None
    if args.sfu_address is not None:
        host, port = args.sfu_address
    elif bound[0] in _WILDCARDS:
        unit.close()
        raise CallSetupError("--sfu listens on every address: say with --sfu-address "
                             "HOST:PORT where clients reach it")
    else:
        host, port = bound
    return CallSetup(SfuGrant(host, port, key), unit, [unit.serve])

"""The servers' options for the server-to-server link, and the key file they share.

    e2e-relay  serve ... --peer-listen 127.0.0.1:7401 --peer-social 127.0.0.1:7501 \\
                         --peer-key-file peer.key
    e2e-social serve ... --peer-listen 127.0.0.1:7501 --peer-relay 127.0.0.1:7401 \\
                         --peer-key-file peer.key
    e2e-relay peer-keygen peer.key

All three options or none: without them the server has no peer, and every cross-transport
request is refused with ``peer_unavailable``. The social server may name several relay nodes
(``--peer-relay`` again for each): it talks to one at a time, and to the next when that one
cannot be reached.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..calls.keyfile import KeyFileError, read_key_file
from ..common.serving import parse_host_port

MAX_PEER_ADDRESSES = 64
"""Addresses of the other server one server takes (relay nodes the social server may use)."""


class PeerSetupError(Exception):
    """The peer options do not fit together, or the key file cannot be read."""


@dataclass(frozen=True, slots=True)
class PeerSetup:
    """Where this server takes the other's requests, where the other's listener is, the key."""

    listen: tuple[str, int]
    peers: tuple[tuple[str, int], ...]
    """The other server's peer listeners (several: relay nodes of one Redis), in order."""
    key: bytes = field(repr=False)


def add_peer_arguments(parser: argparse.ArgumentParser, other: str, several: bool = False
                       ) -> None:
    """``--peer-listen``, ``--peer-OTHER`` and ``--peer-key-file`` (``other``: ``social`` on the
    relay, ``relay`` on the social server; ``several``: ``--peer-OTHER`` may be repeated)."""
    parser.add_argument("--peer-listen", type=parse_host_port, metavar="HOST:PORT",
                        help=f"take the {other} server's requests here (server to server)")
    parser.add_argument(f"--peer-{other}", type=parse_host_port, metavar="HOST:PORT",
                        dest="peer_addresses", action="append",
                        help=f"the {other} server's --peer-listen address" + (
                            f" (again for each {other} node: the next one is used when one "
                            "cannot be reached)" if several else ""))
    parser.set_defaults(peer_several=several)
    parser.add_argument("--peer-key-file", metavar="FILE",
                        help="the key both servers share (made by 'e2e-relay peer-keygen FILE')")


def peer_setup(args: argparse.Namespace) -> PeerSetup | None:
    """The link the options ask for (None without them); :class:`PeerSetupError`."""
    given = [args.peer_listen, args.peer_addresses, args.peer_key_file]
    if not any(given):
        return None
    if not all(given):
        raise PeerSetupError("--peer-listen, the other server's address and --peer-key-file "
                             "go together")
    most = MAX_PEER_ADDRESSES if args.peer_several else 1
    if len(args.peer_addresses) > most:
        raise PeerSetupError(f"at most {most} address{'es' if most > 1 else ''} of the other "
                             "server")
    try:
        key = read_key_file(args.peer_key_file, "'e2e-relay peer-keygen FILE'")
    except KeyFileError as exc:
        raise PeerSetupError(str(exc)) from None
    return PeerSetup(args.peer_listen, tuple(args.peer_addresses), key)

"""``e2e-sfu``: run the forwarding unit on its own, or make the key it shares with a server.

    e2e-sfu keygen sfu.key
    e2e-sfu serve --listen 127.0.0.1:7600 --key-file sfu.key [--last-n N] [--timeout S]

The relay or the social server that issues the join tokens is given the same key file
(``--sfu-address HOST:PORT --sfu-key-file sfu.key``). The unit logs its counts every
``--stats-interval`` seconds and once more, as ``stats {json}``, when it stops.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import trio

from ..common.serving import parse_host_port
from .keyfile import KeyFileError, read_key_file, write_key_file
from .sfu import Sfu, SfuConfig

log = logging.getLogger("e2e.sfu")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``e2e-sfu``."""
    parser = argparse.ArgumentParser(
        prog="e2e-sfu", description="The e2e-proto forwarding unit: forwards call media "
        "(SFrame ciphertext) between the participants a relay or social server admitted.")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new key to share with a server")
    keygen.add_argument("file", help="the key file to create (not overwritten)")
    serve = commands.add_parser("serve", help="run the forwarding unit")
    add_unit_arguments(serve)
    serve.add_argument("--listen", type=parse_host_port, default=("127.0.0.1", 7600),
                       metavar="HOST:PORT", help="UDP address to listen on (default "
                       "127.0.0.1:7600; port 0 picks a free port)")
    serve.add_argument("--key-file", required=True, metavar="FILE",
                       help="the key shared with the server that issues join tokens")
    serve.add_argument("--stats-interval", type=float, default=60.0, metavar="SECONDS",
                       help="log the counts this often (default 60; 0: only at the end)")
    return parser


def add_unit_arguments(parser: argparse.ArgumentParser) -> None:
    """The forwarding unit's tuning options (``e2e-sfu serve``, and the servers' ``--sfu``)."""
    defaults = SfuConfig()
    parser.add_argument("--last-n", type=int, default=defaults.last_n, metavar="N",
                        help="forward only the N loudest senders of a call (default 0: all)")
    parser.add_argument("--participant-timeout", type=float,
                        default=defaults.participant_timeout, metavar="SECONDS",
                        help="remove a silent participant after this long (default "
                        f"{defaults.participant_timeout:g})")
    parser.add_argument("--queue", type=int, default=defaults.queue_packets, metavar="N",
                        help="datagrams waiting per receiver before its own are dropped "
                        f"(default {defaults.queue_packets})")


def unit_config(args: argparse.Namespace) -> SfuConfig:
    """The :class:`SfuConfig` the options of :func:`add_unit_arguments` ask for."""
    return SfuConfig(participant_timeout=args.participant_timeout, queue_packets=args.queue,
                     last_n=args.last_n)


async def log_stats(sfu: Sfu, interval: float) -> None:
    """Log the unit's counts every ``interval`` seconds (never when it is 0)."""
    if interval <= 0:
        await trio.sleep_forever()
    while True:
        await trio.sleep(interval)  # a periodic report
        log.info("stats %s", json.dumps(sfu.stats.as_dict()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``e2e-sfu``."""
    args = build_parser().parse_args(argv)
    if args.command == "keygen":
        try:
            write_key_file(args.file)
        except OSError as exc:
            print(f"e2e-sfu: cannot create {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote a new key to {args.file}; give it to e2e-sfu and to the server")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    try:
        key = read_key_file(args.key_file)
    except KeyFileError as exc:
        print(f"e2e-sfu: {exc}", file=sys.stderr)
        return 2
    sfu = Sfu(key, unit_config(args))
    host, port = args.listen
    try:
        bound = sfu.bind(host, port)
    except OSError as exc:
        print(f"e2e-sfu: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info("e2e-sfu listening on %s:%d (UDP)", *bound)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log_stats, sfu, args.stats_interval)
            await sfu.serve()

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stats %s", json.dumps(sfu.stats.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

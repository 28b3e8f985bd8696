"""``python -m benchmarks`` / ``e2e-bench``: the hot path and the relay beside the floor and peers.

    python -m benchmarks [--quick] [--json FILE] [--markdown] [--plot FILE.png]
                         [--no-relay] [--no-peers] [--no-groups] [--no-media] [--no-daemon]
                         [--no-calls]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import calls as call_figures
from . import crypto, groups, report
from .daemon import daemon_figures, daemon_table
from .media import media_figures
from .relay import relay_figures
from .timing import run_interleaved


@dataclass(frozen=True, slots=True)
class Mode:
    """How long each part runs."""

    name: str
    samples: int
    sample_time: float
    relay_warmup: float
    relay_duration: float
    relay_rounds: int
    daemon_messages: int


QUICK = Mode("quick", samples=9, sample_time=0.004, relay_warmup=0.3, relay_duration=1.5,
             relay_rounds=1, daemon_messages=50)
FULL = Mode("full", samples=41, sample_time=0.02, relay_warmup=1.0, relay_duration=5.0,
            relay_rounds=2, daemon_messages=500)


class ProgressLine:
    """One updating line on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        """Show ``text`` with the elapsed time."""
        line = f"[{time.monotonic() - self.start:6.1f} s] {text}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line[:150])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        """End the progress line."""
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="e2e-bench", description="Benchmark e2e-proto's hot path and relay beside "
        "a libsodium floor and peer implementations (vodozemac, python-olm, Syndace).")
    parser.add_argument("--quick", action="store_true", help="fewer samples (under 90 s)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write every figure and the targets to FILE")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables as markdown (for the README)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw a bar chart of ours / floor / peers (needs matplotlib)")
    parser.add_argument("--no-relay", action="store_true", help="skip the relay figures")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    parser.add_argument("--no-groups", action="store_true",
                        help="skip the group figures (warm 1 KiB, cold send to 1024 x 2)")
    parser.add_argument("--no-media", action="store_true",
                        help="skip the media figures (64 MiB crypto; a 1 GiB transfer, 128 MiB "
                             "with --quick)")
    parser.add_argument("--no-daemon", action="store_true",
                        help="skip the daemon's overhead (bot -> daemon -> relay -> daemon -> bot "
                             "beside the library)")
    parser.add_argument("--no-calls", action="store_true",
                        help="skip the call figures (SFrame, an 8-participant video call and "
                        "the audio crowd through an e2e-sfu process)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the tables and targets."""
    args = build_parser().parse_args(argv)
    mode = QUICK if args.quick else FULL
    started = time.monotonic()
    info = report.machine()
    print(f"e2e-proto benchmarks ({mode.name}) on {report.header_line(info)}")
    peers = {k: v for k, v in info["peers"].items() if v}
    print("peers: " + (", ".join(f"{k} {v}" for k, v in peers.items()) or "none installed"))
    progress = ProgressLine()

    progress("setting up sessions")
    cases, sizes, notes = crypto.all_cases(peers=not args.no_peers)
    cold = None
    if not args.no_groups:
        group_cases, group_notes = groups.group_cases(peers=not args.no_peers)
        cases |= group_cases
        notes |= group_notes
    if not args.no_calls:
        cases |= call_figures.sframe_cases()
    stats = run_interleaved(cases, mode.samples, mode.sample_time, progress=progress)
    if not args.no_groups:
        cold = groups.cold_send(progress=progress)
    relay = None
    if not args.no_relay:
        relay = relay_figures(warmup=mode.relay_warmup, duration=mode.relay_duration,
                              rounds=mode.relay_rounds, progress=progress)
    media = None if args.no_media else media_figures(args.quick, progress)
    daemon = None
    if not args.no_daemon:
        daemon = daemon_figures(mode.daemon_messages, mode.daemon_messages // 10, progress)
    calls = None if args.no_calls else call_figures.call_figures(args.quick, progress)
    progress.done()
    elapsed = time.monotonic() - started
    target_list = (report.targets(stats, relay) + report.media_targets(media)
                   + report.call_targets(stats, calls))

    print()
    print(f"Hot path: median per operation (quartiles), {mode.samples} interleaved samples, "
          "GC off")
    print(report.crypto_table(stats, sizes, args.markdown))
    if cold:
        print()
        print("Groups: the first send to a new group (timed once; sender key to every member "
              "device, then one group message)")
        print(groups.cold_table(cold, args.markdown))
    if relay:
        print()
        print("Relay over loopback (encrypt, relay, decrypt; 100-byte messages)")
        print(report.relay_table(relay, args.markdown))
        redis = report.redis_table(relay, args.markdown)
        if redis:
            print()
            print("Relay on Redis (appendfsync always), 1-3 nodes on one redis-server; with 2 or "
                  "3 nodes every message crosses nodes")
            print(redis)
        for note in relay.get("notes", []):
            print(f"note: {note}")
    if media:
        print()
        print("Media (encrypted attachments; MB = 10^6 bytes)")
        print(report.media_table(media, args.markdown))
    if daemon:
        print()
        print("Daemon over its Unix socket: one message at a time, sender -> receiver "
              f"({mode.daemon_messages} messages)")
        print(daemon_table(daemon))
    if calls:
        print()
        print("Calls through an e2e-sfu process over loopback (load average "
              f"{calls['load_average']:.2f} on {info['cores']} cores)")
        print(report.calls_table(calls, args.markdown))
        print(report.capacity_line(calls))
    for name, note in notes.items():
        print(f"note: {name}: {note}")
    print()
    print("Targets")
    for target in target_list:
        print(("- " if args.markdown else "") + target.line())
    print(f"\n({elapsed:.0f} s)")
    if args.json:
        report.to_json(args.json, info, mode.name, stats, sizes, relay, notes, target_list,
                       elapsed, cold, media, daemon, calls)
    if args.plot:
        try:
            report.plot(args.plot, stats, relay, f"e2e-proto benchmarks ({mode.name}): "
                        + report.header_line(info))
        except ImportError:
            print("--plot needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark's figure functions run and produce numbers (tiny counts; nothing is timed)."""

from __future__ import annotations

import json
import math

from benchmarks import breakdown, crypto, media, report
from benchmarks.__main__ import build_parser
from benchmarks.relay import relay_figures
from benchmarks.timing import Stat, run_interleaved


def test_crypto_figures_produce_numbers() -> None:
    cases, sizes, notes = crypto.all_cases(sizes=(100,), peers=False)
    assert "ours/round-trip/100" in cases and "floor/seal+open/100" in cases
    stats = run_interleaved(cases, samples=2, sample_time=0.0005, warmup=1)
    assert all(math.isfinite(s.median) and s.median > 0 for s in stats.values())
    assert sizes["ours/session-size"] > 0
    assert notes == {}
    table = report.crypto_table(stats, sizes, markdown=True)
    assert table.startswith("| operation |")


def test_targets_are_reported_met_missed_or_na() -> None:
    stats = {"ours/round-trip/1024": Stat(2.1, 1.0, 3.0, 3, 1),
             "floor/seal+open/1024": Stat(1.0, 1.0, 1.0, 3, 1)}
    relay = {"load": [{"server": "relay", "pairs": 16, "messages_per_second": 80.0,
                       "p50_seconds": 0.01, "p99_seconds": 0.02},
                      {"server": "bare", "pairs": 16, "messages_per_second": 100.0,
                       "p50_seconds": 0.001, "p99_seconds": 0.002}],
             "memory": {"5000": {"rss_bytes": 1, "baseline_rss_bytes": 0,
                                 "bytes_per_connection": 10_000}}}
    targets = {t.name: t for t in report.targets(stats, relay)}
    assert targets["round trip 1 KiB vs floor seal+open"].met is False
    assert targets["relay 16 pairs throughput vs bare trio relay"].met is True
    assert targets["relay RSS per idle connection at 5,000"].met is True
    assert targets["session establishment vs floor/establish"].met is None
    assert targets["relay 64 pairs throughput vs bare trio relay"].met is None
    json.dumps([t.line() for t in targets.values()])
    assert "relay / bare" in report.relay_table(relay, markdown=False)


def test_redis_rows_get_their_own_table_and_targets() -> None:
    def row(server: str, nodes: int, rate: float, p99: float) -> dict:
        return {"server": server, "nodes": nodes, "pairs": 16, "messages_per_second": rate,
                "p50_seconds": p99 / 2, "p99_seconds": p99}

    relay = {"load": [row("bare", 1, 1000.0, 0.01), row("relay", 1, 750.0, 0.02),
                      row("redis", 1, 400.0, 0.06), row("redis", 3, 300.0, 0.03)]}
    targets = {t.name: t for t in report.targets({}, relay)}
    throughput = targets["relay on Redis (1 node) 16 pairs throughput vs bare trio relay"]
    assert throughput.met is False and math.isclose(throughput.value or 0, 0.4)
    assert targets["relay on Redis (1 node) 16 pairs p99 latency"].met is False
    assert targets["relay 16 pairs throughput vs bare trio relay"].met is True
    table = report.redis_table(relay, markdown=True).splitlines()
    assert table[0].startswith("| pairs | Redis nodes |")
    assert table[2:] == ["| 16 | 1 | 400 | 30.0 ms | 60.0 ms | 0.40x | 0.53x |",
                         "| 16 | 3 | 300 | 15.0 ms | 30.0 ms | 0.30x | 0.40x |"]
    assert "redis" not in report.relay_table(relay, markdown=True)


def test_hot_path_targets_are_ratios_to_the_required_calls_floors() -> None:
    us = 1e-6
    stats = {name: Stat(value * us, value * us, value * us, 3, 1) for name, value in {
        "ours/ping-pong/1024": 150.0, "vodozemac/ping-pong/1024": 100.0,
        "floor/ping-pong/1024": 130.0, "ours/establish": 800.0,
        "vodozemac/establish": 400.0, "floor/establish": 680.0}.items()}
    targets = {t.name: t for t in report.targets(stats, None)}
    ping_pong = targets["ping-pong 1 KiB vs floor/ping-pong"]
    establish = targets["session establishment vs floor/establish"]
    assert ping_pong.met is True and math.isclose(ping_pong.value or 0, 150 / 130)
    assert ping_pong.limit == 1.25
    assert establish.met is True and math.isclose(establish.value or 0, 800 / 680)
    assert establish.limit == 1.2
    # Peers stay in the tables; only the fan-out regression guard names one.
    assert [name for name in targets if "vodozemac" in name] == [
        "fan-out to 5 devices vs vodozemac Olm"]


def test_required_calls_floor_cases_run() -> None:
    cases = crypto.floor_cases(sizes=(100,))
    assert cases["floor/ping-pong/1024"]() == crypto.payload(1024)
    assert cases["floor/establish"]() == crypto.payload(crypto.FIRST_MESSAGE_SIZE)


def test_command_line_parses() -> None:
    args = build_parser().parse_args(["--quick", "--json", "out.json", "--markdown"])
    assert args.quick and args.markdown and str(args.json) == "out.json"


def test_breakdown_attributes_every_part() -> None:
    cases = breakdown.parts()
    stats = run_interleaved(cases, samples=1, sample_time=0.0005, warmup=1)
    lines = dict(breakdown.attribution(stats))
    parts = [value for line, value in lines.items()
             if line.startswith("round trip:") and not line.endswith("total")]
    assert math.isclose(sum(parts), lines["round trip: total"])
    ping_pong = [value for line, value in lines.items()
                 if line.startswith("ping-pong:") and not line.endswith("total")]
    assert math.isclose(sum(ping_pong), lines["ping-pong: total"])


def test_relay_figures_run_against_every_server() -> None:
    relay = relay_figures(pair_counts=(2,), redis_pair_counts=(2,), redis_nodes=(1, 2),
                          warmup=0.05, duration=0.3, idle_counts=())
    rows = {(row["server"], row["nodes"]): row for row in relay["load"]}
    assert set(rows) == {("bare", 1), ("relay", 1), ("redis", 1), ("redis", 2)}
    assert all(row["pairs"] == 2 and row["messages"] > 0 and row["p99_seconds"] > 0
               for row in rows.values())
def test_media_figures_produce_numbers_and_targets() -> None:
    crypto_figures = media.crypto_figures(rounds=1, size=2 * 2**20)
    assert all(crypto_figures[n]["mb_per_second"] > 0 for n in ("ours", "floor", "raw"))
    transfer = media.transfer_figures(3 * 2**20 + 5)  # a relay and a client process
    assert transfer["blob_size"] > transfer["size"] and transfer["upload_mb_per_second"] > 0
    assert transfer["client_peak_rss_bytes"] > transfer["client_baseline_rss_bytes"] > 0
    figures = {"crypto": crypto_figures, "transfer": transfer}
    targets = {t.name: t for t in report.media_targets(figures)}
    assert len(targets) == 3 and all(t.met is not None for t in targets.values())
    assert "MiB transfer: relay peak RSS" in report.media_table(figures, markdown=False)
    slow = {"crypto": {**crypto_figures, "ours": {"seconds": 1.0, "mb_per_second": 1.0}}}
    assert report.media_targets(slow)[0].met is False
    assert report.media_targets(None)[0].met is None


def test_group_figures_run() -> None:
    from benchmarks import groups

    cases, notes = groups.group_cases(peers=False)
    assert set(cases) == {f"{side}/group-{op}/1024" for side in ("floor", "ours")
                          for op in ("send", "receive")}
    assert cases["ours/group-receive/1024"]() == cases["ours/group-receive/1024"]()
    stats = run_interleaved(cases, samples=2, sample_time=0.0005, warmup=1)
    names = {t.name: t for t in report.targets(stats, None)}
    assert names["group send 1 KiB to 1024 members vs floor (sign + seal)"].value is not None
    cold = groups.cold_send(members=3, devices=2)
    assert cold["pairwise_encryptions"] == 5 and cold["distribution_only_seconds"] > 0
    assert "5" in groups.cold_table(cold, markdown=True)


def test_daemon_figures_produce_numbers() -> None:
    from benchmarks.daemon import daemon_figures, daemon_table

    figures = daemon_figures(count=3, warmup=1)
    assert figures["library"]["messages"] == figures["daemon"]["messages"] == 3
    assert figures["daemon"]["messages_per_second"] > 0
    assert math.isfinite(figures["throughput_ratio"]) and math.isfinite(figures["p50_ratio"])
    assert "daemon / library" in daemon_table(figures)


def test_call_figures_run_and_report() -> None:
    import trio

    from benchmarks import calls

    cases = calls.sframe_cases()
    assert set(cases) == {"ours/sframe/1024", "floor/aes-256-gcm/1024"}
    assert len(cases["ours/sframe/1024"]()) == 1024
    stats = run_interleaved(cases, samples=2, sample_time=0.0005, warmup=1)
    video = trio.run(calls.video_call, 0.8, 2)
    crowd = trio.run(calls.audio_crowd, 3, 0.8)
    last_n = trio.run(calls.audio_crowd, 3, 0.8, 1)
    assert video["received"] > 0 and video["failed"] == 0 and video["unit"]["joins"] == 2
    assert crowd["expected"] == (crowd["sent"] - 3 * calls.WARMUP_FRAMES) * 2
    assert last_n["expected"] * 3 == (last_n["sent"] - 3 * calls.WARMUP_FRAMES) * 2
    figures = {"video": video, "crowd": [crowd], "last_n": last_n, "load_average": 0.0}
    names = {t.name: t for t in report.call_targets(stats, figures)}
    sframe = names["SFrame encrypt+decrypt 1 KiB vs raw AES-256-GCM seal+open"]
    assert sframe.value is not None and sframe.value > 0
    unmeasured = {t.name: t for t in report.call_targets(stats, None)}
    assert unmeasured["8-participant video call (4 KiB at 30 fps): frames failed"].met is None
    assert names["2-participant video call (4 KiB at 30 fps): frames failed"].met is True
    assert "last-N = 1" in report.calls_table(figures, markdown=False)
    assert "loss passes 1 %" in report.capacity_line(figures)

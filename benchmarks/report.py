"""The machine header, the targets, and the outputs: console table, markdown, JSON and chart."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .calls import FRAME_SIZE as SFRAME_SIZE
from .crypto import FANOUT_DEVICES, FANOUT_SIZE, PINGPONG_SIZE, SIZES
from .groups import GROUP_MESSAGE_SIZE
from .timing import Stat

GROUPS = ("ours", "floor", "vodozemac", "vodozemac-megolm", "python-olm", "python-olm-megolm",
          "syndace")
GROUP_TITLES = {
    "ours": "ours", "floor": "floor (libsodium)", "vodozemac": "vodozemac Olm",
    "vodozemac-megolm": "vodozemac Megolm", "python-olm": "python-olm (libolm)",
    "python-olm-megolm": "libolm Megolm", "syndace": "Syndace DR+X3DH",
}
# PyNaCl bundles libsodium and does not export its version: its changelog names it.
_BUNDLED_LIBSODIUM = {"1.6": "1.0.20-stable", "1.5": "1.0.18-stable", "1.4": "1.0.18"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """CPU model, cores, Python, PyNaCl, libsodium and the peers' versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    pynacl = _version("pynacl") or "?"
    sodium = _BUNDLED_LIBSODIUM.get(".".join(pynacl.split(".")[:2]), "unknown")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "implementation": platform.python_implementation(), "os": platform.platform(),
        "pynacl": pynacl, "libsodium": f"{sodium} (bundled with PyNaCl {pynacl})",
        "msgpack": _version("msgpack"), "trio": _version("trio"),
        "peers": {name: _version(name) for name in
                  ("vodozemac", "python-olm", "doubleratchet", "x3dh")},
    }


def header_line(info: dict[str, Any]) -> str:
    """One line naming the machine."""
    return (f"{info['cpu']}, {info['cores']} cores; {info['implementation']} {info['python']}; "
            f"PyNaCl {info['pynacl']}; libsodium {info['libsodium'].split(' ')[0]}")


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One benchmark target: ``value`` compared with ``limit`` by ``comparison``."""

    name: str
    value: float | None
    limit: float
    comparison: str  # "<=", ">=" or "<"
    unit: str
    met: bool | None
    detail: str

    def line(self) -> str:
        """``met``/``missed`` with the value against the limit."""
        state = {True: "met   ", False: "MISSED", None: "n/a   "}[self.met]
        value = "n/a" if self.value is None else f"{self.value:.3g}{self.unit}"
        return f"{state} {self.name}: {value} (limit {self.comparison} {self.limit:g}" \
            f"{self.unit})  {self.detail}"


def _holds(value: float, comparison: str, limit: float) -> bool:
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[comparison]


def _target(name: str, value: float | None, limit: float, comparison: str, unit: str,
            detail: str) -> Target:
    if value is None:
        return Target(name, None, limit, comparison, unit, None, detail or "not measured")
    return Target(name, value, limit, comparison, unit, _holds(value, comparison, limit),
                  detail)


def _med(stats: dict[str, Stat], key: str) -> float | None:
    stat = stats.get(key)
    return None if stat is None else stat.median


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(stats: dict[str, Stat], relay: dict[str, Any] | None) -> list[Target]:
    """Every target of the issue, met or missed (n/a when its figures were not measured)."""
    us = 1e6
    rt = _med(stats, "ours/round-trip/1024")
    floor = _med(stats, "floor/seal+open/1024")
    pp = _med(stats, f"ours/ping-pong/{PINGPONG_SIZE}")
    est = _med(stats, "ours/establish")
    fan_key = f"fan-out-{FANOUT_DEVICES}/{FANOUT_SIZE}"
    fan, vz_fan = _med(stats, f"ours/{fan_key}"), _med(stats, f"vodozemac/{fan_key}")

    def us_pair(a: float | None, b: float | None, names: str) -> str:
        if a is None or b is None:
            return ""
        return f"({names}: {a * us:.1f} us vs {b * us:.1f} us)"

    # Issue 11 restated the hot-path targets against the floors of the libsodium calls each
    # operation requires (measured in the same run); the peer ratios stay in the tables.
    pp_floor = _med(stats, f"floor/ping-pong/{PINGPONG_SIZE}")
    est_floor = _med(stats, "floor/establish")
    out = [
        _target("round trip 1 KiB vs floor seal+open", _ratio(rt, floor), 2.0, "<=", "x",
                us_pair(rt, floor, "ours vs floor")),
        _target("ping-pong 1 KiB vs floor/ping-pong", _ratio(pp, pp_floor), 1.25, "<=", "x",
                us_pair(pp, pp_floor, "ours vs floor")),
        _target("session establishment vs floor/establish", _ratio(est, est_floor), 1.2, "<=",
                "x", us_pair(est, est_floor, "ours vs floor")),
        _target(f"fan-out to {FANOUT_DEVICES} devices vs vodozemac Olm", _ratio(fan, vz_fan),
                0.6, "<=", "x", us_pair(fan, vz_fan, "ours vs vodozemac")),
    ]
    for side, floor_calls in (("send", "sign + seal"), ("receive", "verify + open")):
        ours = _med(stats, f"ours/group-{side}/{GROUP_MESSAGE_SIZE}")
        base = _med(stats, f"floor/group-{side}/{GROUP_MESSAGE_SIZE}")
        megolm = _med(stats, f"vodozemac-megolm/group-{side}/{GROUP_MESSAGE_SIZE}")
        detail = us_pair(ours, base, "ours vs floor")
        if megolm is not None and ours is not None:
            detail += f"; vodozemac Megolm {megolm * us:.1f} us"
        out.append(_target(f"group {side} 1 KiB to 1024 members vs floor ({floor_calls})",
                           _ratio(ours, base), 1.3, "<=", "x", detail))
    load = _load_rows(relay)
    # (name, row key, throughput bound vs bare, p99 bound in ms or None): the SQLite relay's
    # targets (benchmarks/README.md), and issue 17's for one node on Redis.
    for name, key, bound, p99_bound in (
            ("relay 16 pairs", ("relay", 1, 16), 0.75, 25),
            ("relay 64 pairs", ("relay", 1, 64), 0.75, None),
            ("relay on Redis (1 node) 16 pairs", ("redis", 1, 16), 0.5, 50)):
        row, bare = load.get(key), load.get(("bare", 1, key[2]))
        out.append(_target(
            f"{name} throughput vs bare trio relay",
            _ratio(row and row["messages_per_second"], bare and bare["messages_per_second"]),
            bound, ">=", "x", "" if not (row and bare) else
            f"({row['messages_per_second']:.0f} vs {bare['messages_per_second']:.0f} msg/s)"))
        if p99_bound is not None:
            out.append(_target(f"{name} p99 latency", row and row["p99_seconds"] * 1000,
                               p99_bound, "<", " ms", ""))
    memory = (relay or {}).get("memory", {}).get("5000")
    out.append(_target("relay RSS per idle connection at 5,000",
                       memory and memory["bytes_per_connection"] / 1024, 20, "<=", " KiB", ""))
    return out


def call_targets(stats: dict[str, Stat], calls: dict[str, Any] | None) -> list[Target]:
    """Issue #14's targets: SFrame against raw AES-256-GCM, the 8-participant video call."""
    us = 1e6
    sframe = _med(stats, f"ours/sframe/{SFRAME_SIZE}")
    aes = _med(stats, f"floor/aes-256-gcm/{SFRAME_SIZE}")
    detail = "" if sframe is None or aes is None else \
        f"({sframe * us:.1f} us vs {aes * us:.1f} us)"
    video = (calls or {}).get("video") or {}
    name = f"{video.get('participants', 8)}-participant video call (4 KiB at 30 fps)"
    loss = video.get("loss")
    p99 = video.get("p99_seconds")
    return [
        _target("SFrame encrypt+decrypt 1 KiB vs raw AES-256-GCM seal+open",
                _ratio(sframe, aes), 1.5, "<=", "x", detail),
        _target(f"{name}: frames failed", video.get("failed"), 0, "<=", "",
                f"({video.get('received', 0)} received)" if video else ""),
        _target(f"{name}: loss", None if loss is None else loss * 100, 0.5, "<", " %", ""),
        _target(f"{name}: p99 latency (sender to receiver, decrypted)",
                None if p99 is None else p99 * 1000, 20, "<", " ms",
                "" if not video else f"(p50 {video['p50_seconds'] * 1000:.1f} ms)"),
    ]


# -- tables -----------------------------------------------------------------------------------


def _cell(stat: Stat | None, markdown: bool) -> str:
    if stat is None:
        return "–"
    scale, unit = (1e3, "ms") if stat.median >= 1e-3 else (1e6, "µs")
    spread = f"{stat.q1 * scale:.3g}–{stat.q3 * scale:.3g}"
    return f"{stat.median * scale:.3g} {unit} ({spread})" if markdown else \
        f"{stat.median * scale:.3g} {unit} [{spread}]"


def _rows() -> list[tuple[str, str]]:
    rows = [(f"round trip {_size(s)}", f"round-trip/{s}") for s in SIZES]
    rows += [(f"ping-pong {_size(PINGPONG_SIZE)} (DH step every message)",
              f"ping-pong/{PINGPONG_SIZE}"),
             ("session establishment + first message", "establish"),
             (f"fan-out {_size(FANOUT_SIZE)} to {FANOUT_DEVICES} devices",
              f"fan-out-{FANOUT_DEVICES}/{FANOUT_SIZE}"),
             ("envelope encode + decode 1 KiB", "envelope-codec/1024"),
             (f"group send {_size(GROUP_MESSAGE_SIZE)} (any group size: one ciphertext)",
              f"group-send/{GROUP_MESSAGE_SIZE}"),
             (f"group receive {_size(GROUP_MESSAGE_SIZE)} (in order)",
              f"group-receive/{GROUP_MESSAGE_SIZE}")]
    return rows


def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def _floor_key(operation: str) -> str | None:
    if operation.startswith("round-trip/"):
        return "seal+open/" + operation.split("/")[1]
    if operation.startswith(("ping-pong/", "group-")) or operation == "establish":
        return operation  # only the libsodium calls the operation requires
    return None


def crypto_table(stats: dict[str, Stat], sizes: dict[str, int], markdown: bool) -> str:
    """Medians (quartiles) per operation: ours, the floor and each peer that ran."""
    groups = [g for g in GROUPS if any(k.startswith(g + "/") for k in stats)]
    head = ["operation"] + [GROUP_TITLES[g] for g in groups]
    lines = []
    for title, operation in _rows():
        cells = [title]
        for group in groups:
            key = f"{group}/{operation}"
            if group == "floor":
                floor_op = _floor_key(operation)
                key = f"floor/{floor_op}" if floor_op else ""
            cells.append(_cell(stats.get(key), markdown))
        if any(c != "–" for c in cells[1:]):
            lines.append(cells)
    size_row = ["serialised session (bytes)"] + [
        str(sizes[f"{g}/session-size"]) if f"{g}/session-size" in sizes else "–" for g in groups]
    lines.append(size_row)
    floor_rows = [("X25519", "floor/x25519"), ("Ed25519 sign", "floor/ed25519-sign"),
                  ("Ed25519 verify", "floor/ed25519-verify"),
                  ("X25519 key pair (base point)", "floor/x25519-keygen"),
                  ("HMAC-SHA256 (hmac.digest, 32 B key)", "floor/hmac-sha256")]
    for title, key in floor_rows:
        if key in stats:
            lines.append([title] + [_cell(stats[key], markdown) if g == "floor" else "–"
                                    for g in groups])
    return _render(head, lines, markdown)


def _load_rows(relay: dict[str, Any] | None) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The load rows by (server, nodes, pairs)."""
    return {(row["server"], row.get("nodes", 1), row["pairs"]): row
            for row in (relay or {}).get("load", [])}


def relay_table(relay: dict[str, Any], markdown: bool) -> str:
    """Relay (SQLite) vs bare trio relay per pair count, then idle-connection memory."""
    load = _load_rows(relay)
    head = ["pairs", "relay msg/s", "relay p50", "relay p99", "bare msg/s", "bare p50",
            "bare p99", "relay / bare"]
    lines = []
    for pairs in sorted({p for server, _, p in load if server != "redis"}):
        real, bare = load.get(("relay", 1, pairs)), load.get(("bare", 1, pairs))
        row = [str(pairs)]
        for r in (real, bare):
            row += ["–"] * 3 if r is None else [
                f"{r['messages_per_second']:.0f}", f"{r['p50_seconds'] * 1000:.1f} ms",
                f"{r['p99_seconds'] * 1000:.1f} ms"]
        ratio = _ratio(real and real["messages_per_second"], bare and bare["messages_per_second"])
        row.append("–" if ratio is None else f"{ratio:.2f}x")
        lines.append(row)
    text = _render(head, lines, markdown) if lines else ""
    memory = relay.get("memory", {})
    if memory:
        mem_lines = [[f"{int(count):,}", f"{row['rss_bytes'] / 2**20:.1f} MiB",
                      f"{row['baseline_rss_bytes'] / 2**20:.1f} MiB",
                      f"{row['bytes_per_connection'] / 1024:.1f} KiB"]
                     for count, row in memory.items()]
        text += ("\n\n" if text else "") + _render(
            ["idle connections", "relay RSS", "RSS before", "RSS per connection"], mem_lines,
            markdown)
    return text


def redis_table(relay: dict[str, Any], markdown: bool) -> str:
    """The relay on Redis per node count and pair count, beside the bare relay and SQLite."""
    load = _load_rows(relay)
    head = ["pairs", "Redis nodes", "msg/s", "p50", "p99", "vs bare", "vs SQLite relay"]
    lines = []
    for server, nodes, pairs in sorted(k for k in load if k[0] == "redis"):
        row = load[(server, nodes, pairs)]
        cells = [str(pairs), str(nodes), f"{row['messages_per_second']:.0f}",
                 f"{row['p50_seconds'] * 1000:.1f} ms", f"{row['p99_seconds'] * 1000:.1f} ms"]
        for other in ("bare", "relay"):
            peer = load.get((other, 1, pairs))
            ratio = _ratio(row["messages_per_second"], peer and peer["messages_per_second"])
            cells.append("–" if ratio is None else f"{ratio:.2f}x")
        lines.append(cells)
    return _render(head, lines, markdown) if lines else ""


def calls_table(calls: dict[str, Any], markdown: bool) -> str:
    """The video call, then the audio crowd per size (and with last-N)."""
    def row(label: str, figure: dict[str, Any]) -> list[str]:
        loss = figure.get("loss")
        p50, p99 = figure.get("p50_seconds"), figure.get("p99_seconds")
        return [label, f"{figure['unit_in_per_second']:.0f}",
                f"{figure['unit_out_per_second']:.0f}",
                "–" if loss is None else f"{loss * 100:.2f} %",
                str(figure.get("failed", 0)),
                "–" if p50 is None else f"{p50 * 1000:.1f} ms",
                "–" if p99 is None else f"{p99 * 1000:.1f} ms",
                f"{figure['unit_cpu'] * 100:.0f} %", f"{figure['clients_cpu'] * 100:.0f} %"]

    video = calls["video"]
    lines = [row(f"{video['participants']} x video {video['frame_bytes']} B @ {video['fps']} fps",
                 video)]
    for figure in calls["crowd"]:
        lines.append(row(f"{figure['participants']} x audio 160 B @ 50 fps", figure))
    last_n = calls["last_n"]
    lines.append(row(f"{last_n['participants']} x audio, last-N = {last_n['last_n']}", last_n))
    return _render(["call", "unit in/s", "unit out/s", "loss", "failed", "p50", "p99",
                    "unit CPU", "clients CPU"], lines, markdown)


def capacity_line(calls: dict[str, Any]) -> str:
    """Where the audio crowd stops holding: loss over 1 %, and p99 over 20 ms."""
    def first(check: Any) -> str:
        found = [f["participants"] for f in calls["crowd"] if check(f)]
        return f"at {found[0]} participants" if found else \
            f"not up to {calls['crowd'][-1]['participants']}"

    last_n = calls["last_n"]
    return (f"audio crowd, everyone forwarded to everyone: loss passes 1 % "
            f"{first(lambda f: (f['loss'] or 0) > 0.01)}; p99 passes 20 ms "
            f"{first(lambda f: (f['p99_seconds'] or 0) > 0.02)}. With last-N = "
            f"{last_n['last_n']} at {last_n['participants']}: loss "
            f"{(last_n['loss'] or 0) * 100:.2f} %, p99 {(last_n['p99_seconds'] or 0) * 1000:.1f} "
            "ms")


def _render(head: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in rows]
    return "\n".join(out)


def to_json(path: Path, info: dict[str, Any], mode: str, stats: dict[str, Stat],
            sizes: dict[str, int], relay: dict[str, Any] | None, notes: dict[str, str],
            target_list: list[Target], elapsed: float,
            group_cold: dict[str, Any] | None = None,
            media: dict[str, Any] | None = None,
            daemon: dict[str, Any] | None = None,
            calls: dict[str, Any] | None = None) -> None:
    """Write every figure, the cold group send, the media, daemon and call figures and the
    ``targets`` list."""
    document = {
        "machine": info, "mode": mode, "elapsed_seconds": elapsed,
        "units": "seconds per operation (median, quartiles over samples)",
        "figures": {name: asdict(stat) for name, stat in stats.items()},
        "session_sizes_bytes": sizes, "relay": relay, "group_cold_send": group_cold,
        "media": media, "daemon": daemon, "calls": calls, "notes": notes,
        "targets": [asdict(t) for t in target_list],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def plot(path: Path, stats: dict[str, Stat], relay: dict[str, Any] | None, title: str) -> None:
    """Bar chart: ours, the floor and the peers per operation (log µs); relay msg/s beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    operations = [(t, op) for t, op in _rows() if not op.startswith("envelope")]
    groups = [g for g in GROUPS if any(k.startswith(g + "/") for k in stats)]
    has_relay = bool(relay and relay.get("load"))
    fig, axes = plt.subplots(1, 2 if has_relay else 1, figsize=(15 if has_relay else 10, 6.5),
                             gridspec_kw={"width_ratios": [2.2, 1]} if has_relay else None,
                             squeeze=False)
    ax = axes[0][0]
    height = 0.8 / len(groups)
    for index, group in enumerate(groups):
        values, positions = [], []
        for row, (_, operation) in enumerate(operations):
            key = f"{group}/{operation}"
            if group == "floor":
                floor_op = _floor_key(operation)
                key = f"floor/{floor_op}" if floor_op else ""
            if key in stats:
                values.append(stats[key].median * 1e6)
                positions.append(row + index * height)
        ax.barh(positions, values, height=height, label=GROUP_TITLES[group])
    ax.set_yticks([row + 0.4 - height / 2 for row in range(len(operations))])
    ax.set_yticklabels([t for t, _ in operations])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("µs per operation (median, log scale; shorter is faster)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    if has_relay:
        assert relay is not None
        rx = axes[0][1]
        load = _load_rows(relay)
        counts = sorted({pairs for _, _, pairs in load})
        bars = [("relay", 1, "relay (SQLite, fsync)"), ("bare", 1, "bare trio relay")]
        bars += [("redis", nodes, f"relay on Redis, {nodes} node{'s' * (nodes > 1)}")
                 for nodes in sorted({n for server, n, _ in load if server == "redis"})]
        width = 0.8 / len(bars)
        for index, (server, nodes, label) in enumerate(bars):
            offset = (index - (len(bars) - 1) / 2) * width
            rates = [load[(server, nodes, c)]["messages_per_second"]
                     if (server, nodes, c) in load else 0 for c in counts]
            rx.bar([i + offset for i in range(len(counts))], rates, width=width, label=label)
        rx.set_xticks(range(len(counts)))
        rx.set_xticklabels([f"{c} pairs" for c in counts])
        rx.set_ylabel("messages per second (encrypt, relay, decrypt)")
        rx.legend(fontsize=8)
        rx.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- media (benchmarks/media.py) --------------------------------------------------------------


def media_targets(media: dict[str, Any] | None) -> list[Target]:
    """The media targets: encrypt + decrypt >= 0.8x its floor, and the transfer's peak RSS
    (a 1 GiB transfer under 100 MiB on client and relay; --quick measures a smaller one)."""
    crypto = (media or {}).get("crypto")
    ours = crypto and crypto["ours"]["mb_per_second"]
    floor = crypto and crypto["floor"]["mb_per_second"]
    out = [_target(
        "media encrypt+decrypt 64 MiB vs floor (push+pull+2 SHA-256)", _ratio(ours, floor),
        0.8, ">=", "x", "" if not crypto else
        f"({ours:.0f} vs {floor:.0f} MB/s; raw push+pull {crypto['raw']['mb_per_second']:.0f})")]
    transfer = (media or {}).get("transfer")
    size = "1 GiB" if not transfer else _file_size(transfer["size"])
    quick = "" if not transfer or transfer["size"] >= 2**30 else \
        " (quick: the 1 GiB figure needs the full run)"
    for side in ("client", "relay"):
        peak = transfer and transfer[f"{side}_peak_rss_bytes"] / 2**20
        out.append(_target(f"media {size} transfer: {side} peak RSS", peak, 100, "<", " MiB",
                           quick.strip()))
    return out


def _file_size(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"


def media_table(media: dict[str, Any], markdown: bool) -> str:
    """Media throughput (MB/s) and the transfer's memory."""
    rows = []
    crypto = media.get("crypto")
    if crypto:
        size = _file_size(crypto["size"])
        for name, title in (("ours", f"ours: encrypt + decrypt {size} (blob id checked)"),
                            ("floor", "floor: push + pull + 2 SHA-256 (the calls required)"),
                            ("raw", "raw secretstream push + pull")):
            rows.append([title, f"{crypto[name]['mb_per_second']:.0f} MB/s",
                         f"{crypto[name]['seconds'] * 1000:.0f} ms"])
    transfer = media.get("transfer")
    if transfer:
        size = _file_size(transfer["size"])
        for key, title in (("encrypt", f"{size} file: encrypt to disk (client)"),
                           ("upload", f"{size}: upload through the relay (blob bytes)"),
                           ("download", f"{size}: download + check + decrypt to disk")):
            rows.append([title, f"{transfer[key + '_mb_per_second']:.0f} MB/s",
                         f"{transfer[key + '_seconds']:.2f} s"])
        for side in ("client", "relay"):
            rows.append([f"{size} transfer: {side} peak RSS (before: "
                         f"{transfer[side + '_baseline_rss_bytes'] / 2**20:.0f} MiB)",
                         f"{transfer[side + '_peak_rss_bytes'] / 2**20:.0f} MiB", ""])
    return _render(["media", "figure", "time"], rows, markdown)

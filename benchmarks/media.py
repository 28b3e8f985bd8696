"""Media figures: encryption throughput against its floor, transfers through the relay, memory.

* **Crypto** (this process): a 64 MiB file in memory, encrypted with
  :class:`~e2e_proto.media.MediaEncryptor` (fed 64 KiB at a time, as the client reads files)
  and decrypted with :class:`~e2e_proto.media.MediaDecryptor` (fed the blob as it was made)
  checking the blob id. Both sides get the same plaintext chunks, made before timing. The floor is
  the calls the scheme requires, in the same run: secretstream push of every 64 KiB chunk,
  SHA-256 of the ciphertext (the sender's blob id), pull of every chunk, SHA-256 again (the
  receiver's check); raw push + pull is shown beside it (DESIGN §14's benchmark correction).
  Rounds alternate the three, GC off; medians.
* **Transfer** (two processes): the real relay (:mod:`benchmarks.relay_server`, SQLite and
  its blob folder on disk) and a client (:mod:`benchmarks.media_client`) that encrypts a file
  to disk, uploads it, grants it, downloads, checks and decrypts it to disk. Upload and
  download MB/s count blob bytes; peak RSS is each process's ``VmHWM``. The full run moves
  1 GiB; ``--quick`` moves 128 MiB (the 1 GiB figure needs the full run).

MB are 10^6 bytes.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.bindings as sodium

from e2e_proto.constants import MEDIA_CHUNK_SIZE
from e2e_proto.media import MediaDecryptor, MediaEncryptor

from .media_client import status_bytes
from .relay import start_relay

Progress = Callable[[str], None]
CRYPTO_SIZE = 64 * 2**20
QUICK_TRANSFER = 128 * 2**20
FULL_TRANSFER = 2**30
_PIECE = 2**20
_MB = 1e6
_PUSH = sodium.crypto_secretstream_xchacha20poly1305_push
_PULL = sodium.crypto_secretstream_xchacha20poly1305_pull
_STATE = sodium.crypto_secretstream_xchacha20poly1305_state


def _ours(chunks: list[bytes]) -> float:
    """Seconds to encrypt the file fed as read (64 KiB reads, as the client reads it) and
    decrypt the blob fed as it was produced, checking the blob id."""
    start = time.perf_counter()
    encryptor = MediaEncryptor(max_size=2**40)
    blob = [encryptor.feed(chunk) for chunk in chunks]
    sealed = encryptor.finish()
    blob.append(sealed.tail)
    decryptor = MediaDecryptor(sealed.key, sealed.header, sealed.size, sealed.blob_id,
                               max_size=2**40)
    received = sum(len(decryptor.feed(piece)) for piece in blob)  # written out, not kept
    received += len(decryptor.finish())
    elapsed = time.perf_counter() - start
    assert received == sealed.size
    return elapsed


def _required_calls(chunks: list[bytes], hashes: bool) -> float:
    """Seconds of push + pull of every chunk, with the two SHA-256 passes if ``hashes``."""
    key = os.urandom(32)
    start = time.perf_counter()
    state = _STATE()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    sealed, last = [], len(chunks) - 1
    sender = hashlib.sha256()
    for index, chunk in enumerate(chunks):
        out = _PUSH(state, chunk, None, 3 if index == last else 0)
        if hashes:
            sender.update(out)
        sealed.append(out)
    pull = _STATE()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(pull, header, key)
    receiver = hashlib.sha256()
    for out in sealed:
        if hashes:
            receiver.update(out)
        _PULL(pull, out)
    elapsed = time.perf_counter() - start
    assert sender.digest() == receiver.digest()
    return elapsed


def crypto_figures(rounds: int, size: int = CRYPTO_SIZE,
                   progress: Progress = lambda _: None) -> dict[str, Any]:
    """Median seconds and MB/s of ours, the floor and raw secretstream on ``size`` bytes."""
    data = os.urandom(size)
    chunks = [data[i:i + MEDIA_CHUNK_SIZE] for i in range(0, size, MEDIA_CHUNK_SIZE)]
    cases: dict[str, Callable[[], float]] = {
        "ours": lambda: _ours(chunks), "floor": lambda: _required_calls(chunks, True),
        "raw": lambda: _required_calls(chunks, False)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds + 1):  # round 0 warms up
            progress(f"media crypto: round {round_ + 1} of {rounds + 1}")
            order = list(cases) if round_ % 2 else list(reversed(cases))
            for name in order:
                elapsed = cases[name]()
                if round_:
                    times[name].append(elapsed)
                gc.collect()
    finally:
        gc.enable()
    result: dict[str, Any] = {"size": size, "rounds": rounds}
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {"seconds": median, "mb_per_second": size / median / _MB}
    return result


def transfer_figures(size: int, progress: Progress = lambda _: None) -> dict[str, Any]:
    """One ``size``-byte transfer through a real relay process: MB/s and peak RSS of both."""
    with tempfile.TemporaryDirectory(prefix="e2e-bench-media-") as tmp:
        folder = Path(tmp)
        relay = start_relay("real", folder / "relay.log", f"sqlite:{folder / 'relay.db'}")
        try:
            baseline = relay.rss()
            progress(f"media transfer: {size / 2**20:.0f} MiB through the relay")
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.media_client", str(relay.port),
                 str(folder), str(size)], capture_output=True, text=True, timeout=900,
                cwd=Path(__file__).resolve().parent.parent)
            if done.returncode != 0:
                raise RuntimeError(f"media client failed: {done.stderr[-2000:]}")
            client = json.loads(done.stdout.splitlines()[-1])
            server_peak = status_bytes(relay.process.pid, "VmHWM")
        finally:
            relay.stop()
    blob = client["blob_size"]
    return {
        "size": size, "blob_size": blob,
        "encrypt_mb_per_second": size / client["encrypt_seconds"] / _MB,
        "upload_mb_per_second": blob / client["upload_seconds"] / _MB,
        "download_mb_per_second": blob / client["download_seconds"] / _MB,
        "client_peak_rss_bytes": client["peak_rss_bytes"],
        "client_baseline_rss_bytes": client["baseline_rss_bytes"],
        "relay_peak_rss_bytes": server_peak, "relay_baseline_rss_bytes": baseline,
        **{k: client[k] for k in ("encrypt_seconds", "upload_seconds", "download_seconds")},
    }


def media_figures(quick: bool, progress: Progress = lambda _: None) -> dict[str, Any]:
    """The whole media section: crypto (64 MiB) and one transfer (128 MiB quick, 1 GiB full)."""
    return {"crypto": crypto_figures(3 if quick else 7, progress=progress),
            "transfer": transfer_figures(QUICK_TRANSFER if quick else FULL_TRANSFER, progress)}

"""``python -m benchmarks.media_client PORT FOLDER SIZE``: one transfer of SIZE bytes, timed.

Alice and Bob (fresh homes in FOLDER) register with the relay on 127.0.0.1:PORT; Alice encrypts
a SIZE-byte file into her outgoing folder, uploads the blob and grants it to Bob with a message;
Bob downloads, checks and decrypts it into his files folder. The client code is the one
``send-file`` and ``recv`` run (:mod:`client.core.transfer`), called below the ``media`` payload
so that SIZE may pass the protocol's 100 MiB (the relay must allow it). Prints one JSON line:
the seconds of each step and this process's RSS before and at its peak.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from client.core.transfer import download, prepare, upload
from client.private.session import PrivateClient
from client.private.state import ClientState
from e2e_proto.payload import Payload

HOST = "127.0.0.1"
_BLOCK = 1024 * 1024


def status_bytes(pid: int | str, field: str) -> int:
    """A ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@dataclass(frozen=True, slots=True)
class _Secrets:
    """What Bob needs to fetch the blob (a ``media`` payload would carry it)."""

    blob_id: bytes
    key: bytes
    header: bytes
    size: int
    name: str | None
    sha256: bytes | None


async def transfer(port: int, folder: Path, size: int) -> dict[str, float]:
    """Send one ``size``-byte file from a new alice to a new bob; the timings."""
    alice = PrivateClient(ClientState(folder / "alice"), HOST, port)
    bob = PrivateClient(ClientState(folder / "bob"), HOST, port)
    for client, name in ((alice, "alice"), (bob, "bob")):
        async with client.connect() as session:
            await session.register(name)
    source = folder / "source.bin"
    block = os.urandom(_BLOCK)
    with open(source, "wb") as out:
        for offset in range(0, size, _BLOCK):
            out.write(block[:min(_BLOCK, size - offset)])
    gc.collect()
    baseline = status_bytes("self", "VmRSS")
    clock = time.perf_counter
    async with alice.session() as a:
        start = clock()
        outgoing = await prepare(alice.state.files, source, "bob", alice.random, max_size=size)
        encrypted = clock()
        await upload(a.connection, outgoing.blob, outgoing.blob_id)
        uploaded = clock()
        await a.send_payload("bob", Payload.new("text", 0, alice.random, text="a file"),
                             blobs=[outgoing.blob_id])
    source.unlink()
    async with bob.session() as b:
        await b.receive(lambda message: None)
        secrets = _Secrets(outgoing.blob_id, outgoing.key, outgoing.header, outgoing.size,
                           "received.bin", outgoing.sha256)
        started = clock()
        path, digest = await download(b.connection, secrets, bob.state.files.folder,
                                      ".incoming-bench", max_size=size)
        downloaded = clock()
    if digest != outgoing.sha256 or path.stat().st_size != size:
        raise RuntimeError("the received file is not the one sent")
    return {"size": size, "blob_size": outgoing.blob.stat().st_size,
            "encrypt_seconds": encrypted - start, "upload_seconds": uploaded - encrypted,
            "download_seconds": downloaded - started,
            "baseline_rss_bytes": baseline, "peak_rss_bytes": status_bytes("self", "VmHWM")}


def main() -> None:
    """``media_client PORT FOLDER SIZE``."""
    port, folder, size = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(trio.run(transfer, port, folder, size)), flush=True)


if __name__ == "__main__":
    main()

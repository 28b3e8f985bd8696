"""A relay in its own process for the relay figures: the real one, or a bare trio forwarder.

``python -m benchmarks.relay_server real STORE`` serves :class:`server.relay.server.Relay` on
``STORE`` (``sqlite:PATH``, synchronous=FULL as deployed, or ``redis://HOST:PORT/DB``: one node
of several) on 127.0.0.1 with an OS-chosen port; ``bare`` serves a forwarder that speaks the
same frames with no storage, no signature checks and no crypto. Both print ``PORT <n>`` on
stdout once listening and stop when stdin closes.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from typing import Any

import trio

from e2e_proto.errors import E2EProtoError
from e2e_proto.wire import Envelope, FrameDecoder, encode_frame

HOST = "127.0.0.1"


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class BareRelay:
    """Forwards ``send`` envelopes to the recipient's connection at once; acks everything."""

    def __init__(self) -> None:
        self.online: dict[tuple[str, int], _BareConnection] = {}
        self.seq = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection until it closes."""
        connection = _BareConnection(stream)
        decoder = FrameDecoder()
        try:
            await connection.send({"type": "challenge", "nonce": bytes(32)})
            while data := await stream.receive_some(65536):
                decoder.feed(data)
                while (frame := decoder.next_frame()) is not None:
                    await self._handle(connection, frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, E2EProtoError):
            pass
        finally:
            if connection.address is not None:
                self.online.pop(connection.address, None)

    async def _handle(self, connection: _BareConnection, frame: dict[str, Any]) -> None:
        kind, request_id = frame.get("type"), frame.get("id")
        result: dict[str, Any] = {}
        if kind in ("register", "auth"):
            connection.address = (frame["account"], frame.get("device_id", 0))
            self.online[connection.address] = connection
        elif kind == "send":
            for data in frame["envelopes"]:
                recipient = self.online.get(tuple(Envelope.decode(data).recipient))
                self.seq += 1
                if recipient is not None:
                    await recipient.send({"type": "deliver", "seq": self.seq, "envelope": data})
            result = {"stored": len(frame["envelopes"])}
        await connection.send({"id": request_id, "ok": True, **result})


class _BareConnection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.address: tuple[str, int] | None = None
        self.lock = trio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.lock:
            await self.stream.send_all(encode_frame(frame))


async def _until_stdin_closes() -> None:
    await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


async def _serve(kind: str, store: str) -> None:
    raise_fd_limit(20_000)
    if kind == "bare":
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host=HOST)
            nursery.start_soon(trio.serve_listeners, BareRelay().handle, listeners)
            await _report_and_wait(listeners, nursery)
        return
    from server.common.blobs import BlobLimits
    from server.relay.backends import open_backend
    from server.relay.config import RelayConfig
    from server.relay.main import serve
    from server.relay.server import Relay

    # The request-rate limits (200/s per connection, 400/s per account) would cap a closed-loop
    # sender below what the relay can do, the memory figure opens thousands of connections for
    # one device, and every account registers from 127.0.0.1; everything else (durable
    # storage, checks, group commit) is the deployed configuration. The media figure moves a
    # 1 GiB blob, past the 100 MiB a deployed relay takes.
    config = RelayConfig(requests_per_second=1e9, request_burst=10**9,
                         account_requests_per_second=1e9, account_request_burst=10**9,
                         connections_per_account=10**9, registration_burst=10**9,
                         blobs=BlobLimits(max_blob_size=2**32, quota=2**34))
    with tempfile.TemporaryDirectory(prefix="e2e-bench-blobs-") as scratch:
        # A store in a file keeps its blobs beside it; nodes on Redis get a folder here.
        blob_dir = None if store.startswith("sqlite:") else scratch
        async with open_backend(store) as (opened, hub), trio.open_nursery() as nursery:
            relay = Relay(opened, config, hub=hub, blob_dir=blob_dir)
            listeners = await nursery.start(serve, relay, HOST, 0)
            await _report_and_wait(listeners, nursery)


async def _report_and_wait(listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
    print(f"PORT {listeners[0].socket.getsockname()[1]}", flush=True)
    await _until_stdin_closes()
    nursery.cancel_scope.cancel()


def main() -> None:
    """``relay_server (real STORE | bare)``."""
    kind = sys.argv[1]
    trio.run(_serve, kind, sys.argv[2] if len(sys.argv) > 2 else "")


if __name__ == "__main__":
    main()

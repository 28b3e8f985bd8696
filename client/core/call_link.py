"""One participant's datagram path to the forwarding unit: its socket, its packet key and the
counters of what it sends and accepts (docs/PROTOCOL.md §18.4).

Invariant: every datagram it sends is sealed under the current packet key with a counter never
used before under that key, and it accepts a sealed datagram from the unit only once, only from
the unit's address and only when the tag verifies; anything else is counted and dropped.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import trio

from e2e_proto import call_packets as packets
from e2e_proto.call_packets import PacketKey, ReplayWindow
from e2e_proto.constants import MAX_CALL_DATAGRAM
from e2e_proto.errors import MalformedError, PacketAuthenticationError

SOCKET_BUFFER = 2 * 1024 * 1024
RECEIVE_BATCH = 128


class MediaLink:
    """A UDP socket to the unit at ``peer``, sending as ``participant`` under ``key``."""

    def __init__(self, peer: tuple[str, int], participant: int, key: bytes,
                 max_kbps: int = 0) -> None:
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self._sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        self._sock.setblocking(False)
        self.max_kbps = max_kbps
        self.dropped = 0
        """Datagrams refused: from elsewhere, malformed, replayed or with a bad tag."""
        self.unsent = 0
        """Datagrams the socket could not take."""
        self.admit(peer, participant, key)

    def admit(self, peer: tuple[str, int], participant: int, key: bytes) -> None:
        """Use a new grant: the unit's address, the participant id and packet key."""
        self.peer = peer
        self.participant = participant
        self.key = PacketKey(key)
        self._counter = 0
        self._replay = ReplayWindow()

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def _send(self, datagram: bytes) -> None:
        try:
            self._sock.sendto(datagram, self.peer)
        except (BlockingIOError, OSError):
            self.unsent += 1

    def send_join(self, token: bytes) -> None:
        """JOIN with ``token``."""
        self._send(packets.join_packet(self.key, self.participant, self._next(),
                                       self.max_kbps, token))

    def send_media(self, kind: int, level: int, sframe: bytes, sframe_rest: bytes = b"") -> None:
        """One SFrame ciphertext, ``sframe || sframe_rest`` (see ``media_packet``)."""
        self._send(packets.media_packet(self.key, self.participant, self._next(), kind, level,
                                        sframe, sframe_rest))

    def send_control(self, kind: int) -> None:
        """KEEPALIVE or LEAVE."""
        self._send(packets.control_packet(self.key, kind, self.participant, self._next()))

    def accept(self, data: bytes) -> int | None:
        """The type of an acceptable datagram from the unit; None (counted) otherwise.

        FORWARD and REJECT are untagged; every other type must be sealed for this participant
        under the current key with a fresh counter.
        """
        try:
            kind = packets.packet_type(data)
            if kind in (packets.FORWARD, packets.REJECT):
                return kind
            kind, participant, counter = packets.sealed_head(data)
            if participant != self.participant or not self._replay.fresh(counter):
                raise MalformedError("not for this participant, or replayed")
            self.key.verify(data)
        except (MalformedError, PacketAuthenticationError):
            self.dropped += 1
            return None
        self._replay.mark(counter)
        return kind

    async def receive(self, handle: Callable[[bytes], None]) -> None:
        """Hand every datagram from the unit to ``handle`` until cancelled."""
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(RECEIVE_BATCH):
                try:
                    data, peer = sock.recvfrom(MAX_CALL_DATAGRAM + 1)
                except BlockingIOError:
                    break
                except OSError:
                    continue
                if peer[:2] != self.peer or len(data) > MAX_CALL_DATAGRAM:
                    self.dropped += 1
                    continue
                handle(data)
            else:
                await trio.lowlevel.checkpoint()

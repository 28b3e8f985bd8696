"""Synthetic call media: frames that say what they are, and a receiver's account of one sender.

This is a protocol prototype, not a codec: a frame is a header, random bytes and a checksum,
so that a receiver can count what the network and the forwarding unit did to a stream.

Invariant: a frame is accepted only whole (its CRC-32 matches and its header is well formed),
and :class:`StreamStats` counts every frame once, as received, duplicate or corrupt; the loss
it reports is the sequence numbers between the first and the highest received that never
arrived.

Frame (the plaintext inside SFrame; integers big-endian)::

    kind (1) || 0 0 0 || seq (4) || sent_at_us (8) || random bytes || CRC-32 (4) of all before

``sent_at_us`` is the sender's wall clock in microseconds, so latency is meaningful on one
host or between hosts with synchronised clocks.
"""

from __future__ import annotations

import math
import struct
import zlib
from array import array
from dataclasses import dataclass

from .call_packets import AUDIO, VIDEO
from .constants import CALL_FRAME_CHECKSUM_SIZE, CALL_FRAME_HEADER_SIZE
from .errors import LocalProtocolError, MalformedError
from .primitives import RandomSource, system_random

_HEADER = struct.Struct(">B3xIQ")
_CRC = struct.Struct(">I")
MIN_FRAME_SIZE = CALL_FRAME_HEADER_SIZE + CALL_FRAME_CHECKSUM_SIZE
MAX_SEQ = 2**32 - 1
MAX_LATENCY_SAMPLES = 1_000_000
"""Latencies a :class:`StreamStats` keeps (about 9 hours of 30 fps); later frames count only."""
_SEEN_WINDOW = 1024
_SEEN_MASK = (1 << _SEEN_WINDOW) - 1


@dataclass(frozen=True, slots=True)
class MediaProfile:
    """A synthetic stream: its kind, frame rate and frame sizes (bytes, whole frames)."""

    kind: int
    fps: int
    min_size: int
    max_size: int
    keyframe_size: int

    def __post_init__(self) -> None:
        if not MIN_FRAME_SIZE <= self.min_size <= self.max_size <= self.keyframe_size:
            raise LocalProtocolError(f"frame sizes must be {MIN_FRAME_SIZE} or more, ordered")

    def size_of(self, seq: int, random: RandomSource = system_random) -> int:
        """The size of frame ``seq``: a keyframe once a second, else drawn from the range."""
        if seq % self.fps == 0:
            return self.keyframe_size
        span = self.max_size - self.min_size
        if span == 0:
            return self.min_size
        return self.min_size + int.from_bytes(random(4), "big") % (span + 1)


AUDIO_PROFILE = MediaProfile(AUDIO, 50, 160, 160, 160)
"""Audio-like: 160-byte frames at 50 per second (20 ms, as a narrow-band codec)."""
VIDEO_PROFILE = MediaProfile(VIDEO, 30, 1024, 4096, 8192)
"""Video-like: 30 frames per second, 1-4 KiB, with an 8 KiB keyframe every second."""


def fixed_profile(kind: int, fps: int, size: int) -> MediaProfile:
    """A stream whose frames are all ``size`` bytes (the benchmarks' 4 KiB video)."""
    return MediaProfile(kind, fps, size, size, size)


def make_frame(kind: int, seq: int, sent_at_us: int, size: int,
               random: RandomSource = system_random) -> bytes:
    """A frame of ``size`` bytes: header, ``size - 20`` random bytes, checksum."""
    if not MIN_FRAME_SIZE <= size or not 0 <= seq <= MAX_SEQ or kind not in (AUDIO, VIDEO):
        raise LocalProtocolError("a frame needs a known kind, a u32 seq and at least 20 bytes")
    body = _HEADER.pack(kind, seq, sent_at_us) + random(size - MIN_FRAME_SIZE)
    return body + _CRC.pack(zlib.crc32(body))


def read_frame(frame: bytes) -> tuple[int, int, int]:
    """(kind, seq, sent_at_us) of a whole frame; :class:`MalformedError` for a damaged one."""
    if len(frame) < MIN_FRAME_SIZE:
        raise MalformedError("a media frame is at least 20 bytes")
    view = memoryview(frame)
    (crc,) = _CRC.unpack_from(frame, len(frame) - CALL_FRAME_CHECKSUM_SIZE)
    if zlib.crc32(view[:-CALL_FRAME_CHECKSUM_SIZE]) != crc:
        raise MalformedError("the media frame's checksum does not match")
    kind, seq, sent_at = _HEADER.unpack_from(frame)
    if kind not in (AUDIO, VIDEO) or any(frame[1:4]):
        raise MalformedError("the media frame's header is malformed")
    return kind, seq, sent_at


class StreamStats:
    """What one receiver got of one sender's stream: frames, loss, order, damage and latency.

    ``frame(seq, latency)`` takes each frame that decrypted and checked; ``failed`` (a tag or
    checksum that did not verify) and ``no_key`` (no key for its KID, even after waiting) are
    counted by the caller.
    """

    __slots__ = ("_first", "_highest", "_latencies", "_seen", "duplicates", "failed", "no_key",
                 "received", "reordered")

    def __init__(self) -> None:
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.failed = 0
        self.no_key = 0
        self._first: int | None = None
        self._highest = -1
        self._seen = 0  # bit i: seq highest - i arrived
        self._latencies = array("d")

    def frame(self, seq: int, latency: float) -> None:
        """Count a good frame with sequence number ``seq`` that took ``latency`` seconds."""
        self.received += 1
        if self._first is None:
            self._first = seq
        behind = self._highest - seq
        if behind <= -_SEEN_WINDOW:  # a window or more ahead: start it afresh, whatever the jump
            self._seen = 1
            self._highest = seq
        elif behind < 0:
            self._seen = ((self._seen << -behind) | 1) & _SEEN_MASK
            self._highest = seq
        elif behind >= _SEEN_WINDOW or (self._seen >> behind) & 1:
            self.duplicates += 1  # or too old to tell: not counted as received
            return
        else:
            self._seen |= 1 << behind
            self.reordered += 1
            if seq < self._first:
                self._first = seq
        if len(self._latencies) < MAX_LATENCY_SAMPLES:
            self._latencies.append(latency)

    @property
    def unique(self) -> int:
        """Distinct frames received."""
        return self.received - self.duplicates

    @property
    def lost(self) -> int:
        """Frames between the first and the highest received that never arrived."""
        if self._first is None:
            return 0
        return max(0, self._highest - self._first + 1 - self.unique)

    def latency(self, fraction: float) -> float | None:
        """The latency below which ``fraction`` (0.5, 0.99) of the frames arrived (seconds)."""
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]  # nearest rank

    def latencies(self) -> list[float]:
        """Every latency kept, in arrival order (to pool several streams)."""
        return list(self._latencies)

"""Datagrams between call participants and the forwarding unit (docs/PROTOCOL.md §18.4).

Invariant: every datagram a participant sends, and every control datagram the forwarding unit
sends it, carries a 16-byte tag under the participant's packet key (HMAC-SHA256 truncated to
128 bits) over everything before the tag, and a 64-bit counter that a receiver accepts at most
once (:class:`ReplayWindow`). Forwarded media is the one exception: its integrity comes from
SFrame, end to end, so the unit forwards a sender's datagram to every receiver as one byte
string, not re-tagged per receiver.

The first byte is ``version << 4 | type`` (version 1); integers are big-endian::

    sealed (participant -> unit; unit -> participant: WELCOME, EVENT, KEEPALIVE_ACK)
        type (1) || participant (4) || counter (8) || body || tag (16)
    JOIN body          max_kbps (4) || token          (max_kbps 0: no limit asked)
    MEDIA body         kind (1) || level (1) || SFrame ciphertext
    KEEPALIVE, LEAVE, KEEPALIVE_ACK body: empty
    WELCOME body       count (1) || participant (4) x count   (the others already admitted)
    EVENT body         event (1) || subject participant (4)
    FORWARD (unit -> participant, untagged)
        type (1) || sender (4) || sender's counter (8) || kind (1) || level (1) || SFrame
    REJECT (unit -> anyone, untagged: the unit may hold no key for the address)
        type (1) || participant (4) || reason (1)

A FORWARD is the sender's MEDIA datagram with its first byte changed and its tag cut off.
``level`` is the sender's audio level, 0 (loudest) to 127 (silence) as in RFC 6464: in the
clear, so that the unit can forward only the loudest senders.
"""

from __future__ import annotations

import hmac
import struct

from .constants import CALL_PACKET_TAG_SIZE, CALL_PACKET_VERSION, CALL_REPLAY_WINDOW
from .errors import MalformedError, PacketAuthenticationError
from .primitives import HmacKey

# Types (low nibble of the first byte).
JOIN, MEDIA, KEEPALIVE, LEAVE = 1, 2, 3, 4
FORWARD, WELCOME, EVENT, KEEPALIVE_ACK, REJECT = 8, 9, 10, 11, 12
# Media kinds, events and reject reasons.
AUDIO, VIDEO = 0, 1
JOINED, LEFT, TIMED_OUT = 1, 2, 3
REJECT_NOT_ADMITTED, REJECT_TOKEN, REJECT_FULL = 1, 2, 3

_HEAD = struct.Struct(">BIQ")  # type byte, participant, counter
HEAD_SIZE = _HEAD.size
MIN_SEALED_SIZE = HEAD_SIZE + CALL_PACKET_TAG_SIZE
_MEDIA_HEAD = struct.Struct(">BIQBB")
MEDIA_HEAD_SIZE = _MEDIA_HEAD.size
_JOIN_RATE = struct.Struct(">I")
_EVENT = struct.Struct(">BI")
_REJECT = struct.Struct(">BIB")
_U32 = struct.Struct(">I")
_TAG = CALL_PACKET_TAG_SIZE
_WINDOW_MASK = (1 << CALL_REPLAY_WINDOW) - 1


def type_byte(kind: int) -> int:
    """The first byte of a datagram of type ``kind``."""
    return (CALL_PACKET_VERSION << 4) | kind


FORWARD_BYTE = bytes((type_byte(FORWARD),))


def packet_type(data: bytes) -> int:
    """The type of a datagram; :class:`MalformedError` for an empty one or another version."""
    if not data or data[0] >> 4 != CALL_PACKET_VERSION:
        raise MalformedError("not a call datagram of version 1")
    return data[0] & 0x0F


class PacketKey:
    """One participant's packet key: tags what is sent, checks what is received."""

    __slots__ = ("_mac",)

    def __init__(self, key: bytes) -> None:
        self._mac = HmacKey(key)

    def seal(self, unsealed: bytes) -> bytes:
        """``unsealed || tag``."""
        return unsealed + self._mac.digest(unsealed)[:_TAG]

    def verify(self, packet: bytes) -> None:
        """Raise :class:`PacketAuthenticationError` unless ``packet`` ends in its tag."""
        if len(packet) < MIN_SEALED_SIZE or not hmac.compare_digest(
                self._mac.digest(memoryview(packet)[:-_TAG])[:_TAG], packet[-_TAG:]):
            raise PacketAuthenticationError("the datagram's tag does not verify")


def sealed_head(data: bytes) -> tuple[int, int, int]:
    """(type, participant, counter) of a sealed datagram (tag not checked yet).

    :class:`MalformedError` when ``data`` is too short to be one or of another version.
    """
    if len(data) < MIN_SEALED_SIZE:
        raise MalformedError("a sealed call datagram is at least 29 bytes")
    byte, participant, counter = _HEAD.unpack_from(data)
    if byte >> 4 != CALL_PACKET_VERSION:
        raise MalformedError("not a call datagram of version 1")
    return byte & 0x0F, participant, counter


def _sealed(key: PacketKey, kind: int, participant: int, counter: int, body: bytes) -> bytes:
    return key.seal(_HEAD.pack(type_byte(kind), participant, counter) + body)


# -- participant -> forwarding unit -----------------------------------------------------------


def join_packet(key: PacketKey, participant: int, counter: int, max_kbps: int,
                token: bytes) -> bytes:
    """JOIN: the token, and the receive rate asked for (kbit/s; 0: no limit)."""
    return _sealed(key, JOIN, participant, counter, _JOIN_RATE.pack(max_kbps) + token)


def media_packet(key: PacketKey, participant: int, counter: int, kind: int, level: int,
                 sframe: bytes, sframe_rest: bytes = b"") -> bytes:
    """MEDIA: one SFrame ciphertext, ``sframe || sframe_rest``, of ``kind`` (AUDIO, VIDEO) at
    audio ``level`` (0-127).

    The ciphertext comes whole, or as the (header, ciphertext) of ``CallKeys.encrypt_parts``:
    then the frame is copied into the datagram without first being copied behind its header.
    """
    return key.seal(_MEDIA_HEAD.pack(type_byte(MEDIA), participant, counter, kind, level)
                    + sframe + sframe_rest)


def control_packet(key: PacketKey, kind: int, participant: int, counter: int) -> bytes:
    """A sealed datagram with no body: KEEPALIVE, LEAVE, KEEPALIVE_ACK."""
    return _sealed(key, kind, participant, counter, b"")


def join_body(data: bytes) -> tuple[int, bytes]:
    """(max_kbps, token) of a verified JOIN; :class:`MalformedError` when it has no token."""
    if len(data) < MIN_SEALED_SIZE + _JOIN_RATE.size + 1:
        raise MalformedError("a JOIN datagram carries a token")
    (max_kbps,) = _JOIN_RATE.unpack_from(data, HEAD_SIZE)
    return max_kbps, data[HEAD_SIZE + _JOIN_RATE.size:-_TAG]


def media_head(data: bytes) -> tuple[int, int]:
    """(kind, level) of a MEDIA datagram; :class:`MalformedError` when it has no SFrame."""
    if len(data) < MEDIA_HEAD_SIZE + _TAG + 1:
        raise MalformedError("a MEDIA datagram carries an SFrame ciphertext")
    return data[HEAD_SIZE], data[HEAD_SIZE + 1]


def forward_of(media: bytes) -> bytes:
    """The FORWARD datagram of a verified MEDIA datagram (one copy, for every receiver)."""
    return FORWARD_BYTE + media[1:-_TAG]


# -- forwarding unit -> participant -----------------------------------------------------------


def welcome_packet(key: PacketKey, participant: int, counter: int,
                   others: list[int]) -> bytes:
    """WELCOME: admitted; ``others`` are the participants admitted before (at most 255)."""
    if len(others) > 255:
        raise MalformedError("a WELCOME lists at most 255 participants")
    body = bytes((len(others),)) + b"".join(_U32.pack(p) for p in others)
    return _sealed(key, WELCOME, participant, counter, body)


def event_packet(key: PacketKey, participant: int, counter: int, event: int,
                 subject: int) -> bytes:
    """EVENT: ``subject`` JOINED, LEFT or TIMED_OUT."""
    return _sealed(key, EVENT, participant, counter, _EVENT.pack(event, subject))


def reject_packet(participant: int, reason: int) -> bytes:
    """REJECT (untagged): not admitted, a bad or expired token, or the call is full."""
    return _REJECT.pack(type_byte(REJECT), participant, reason)


def event_body(data: bytes) -> tuple[int, int]:
    """(event, subject) of a verified EVENT."""
    if len(data) != MIN_SEALED_SIZE + _EVENT.size:
        raise MalformedError("an EVENT datagram has the wrong size")
    return _EVENT.unpack_from(data, HEAD_SIZE)


def forward_head(data: bytes) -> tuple[int, int, int]:
    """(sender, kind, level) of a FORWARD; the SFrame ciphertext is ``data[MEDIA_HEAD_SIZE:]``.

    :class:`MalformedError` when it is too short to carry one.
    """
    if len(data) <= MEDIA_HEAD_SIZE:
        raise MalformedError("a FORWARD datagram carries an SFrame ciphertext")
    _, sender, _, kind, level = _MEDIA_HEAD.unpack_from(data)
    return sender, kind, level


def reject_body(data: bytes) -> tuple[int, int]:
    """(participant, reason) of a REJECT."""
    if len(data) != _REJECT.size:
        raise MalformedError("a REJECT datagram has the wrong size")
    _, participant, reason = _REJECT.unpack(data)
    return participant, reason


class ReplayWindow:
    """The counters accepted so far: the highest, and which of the 128 below it were seen.

    A counter is fresh when it is above the highest or inside the window and not seen; check
    :meth:`fresh` before the tag and :meth:`mark` only after it verified, so a forged
    datagram changes nothing.
    """

    __slots__ = ("_highest", "_seen")

    def __init__(self) -> None:
        self._highest = -1
        self._seen = 0  # bit i: counter highest - i was accepted

    def fresh(self, counter: int) -> bool:
        """Whether ``counter`` was not accepted before and is not too old to tell."""
        behind = self._highest - counter
        if behind < 0:
            return True
        return behind < CALL_REPLAY_WINDOW and not (self._seen >> behind) & 1

    def mark(self, counter: int) -> None:
        """Record ``counter`` as accepted (it must be :meth:`fresh`).

        A counter a window or more ahead restarts the window: the work and the memory stay
        those of a 128-bit integer, whatever the jump (counters are u64 from the network).
        """
        ahead = counter - self._highest
        if ahead >= CALL_REPLAY_WINDOW:
            self._seen = 1
            self._highest = counter
        elif ahead > 0:
            self._seen = ((self._seen << ahead) | 1) & _WINDOW_MASK
            self._highest = counter
        else:
            self._seen |= 1 << -ahead

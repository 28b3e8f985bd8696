"""Unpacking msgpack from the network within bounds that the protocol derives.

Invariant: a document is unpacked only within its :class:`UnpackLimits`. As soon as a bound is
passed, unpacking stops with :class:`ValueError` (msgpack's own errors for bytes that are not
msgpack), so a peer's bytes cost at most what the bounds allow, however they are shaped.

:data:`FRAME_LIMITS` bounds any frame of the protocol (and a payload, which travels inside one);
the tighter limits of one kind of document live beside its codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .constants import MAX_FRAME_SIZE


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    """Bounds on one msgpack document, checked while it is unpacked.

    msgpack checks each str, bin, array, map and ext length before it allocates the value. The
    lengths alone do not bound the work: a 1 MiB frame of nested empty arrays (one byte each on
    the wire, a 56-byte list each in Python) stays within any length limit and still builds a
    million lists (about 60 MiB and 0.3 s). ``max_containers`` bounds the arrays and maps of
    the whole document, and with them its nesting depth: each level is a container (msgpack
    itself refuses more than 1024 levels).
    """

    max_str_len: int
    """The longest str, in UTF-8 bytes."""
    max_bin_len: int
    """The longest bin, in bytes."""
    max_array_len: int
    """The most elements of one array."""
    max_map_len: int
    """The most keys of one map."""
    max_containers: int
    """The most arrays and maps in the whole document (the document itself counts)."""
    max_ext_len: int = 0
    """The longest ext value: the protocol uses no msgpack extension types."""

    def unpack(self, data: bytes) -> Any:
        """``data`` unpacked (map keys must be str or bin); ValueError past any bound."""
        remaining = self.max_containers

        def count(container: Any) -> Any:  # called as each array or map is completed
            nonlocal remaining
            remaining -= 1
            if remaining < 0:
                raise ValueError(f"more than {self.max_containers} arrays and maps")
            return container

        return msgpack.unpackb(
            data, strict_map_key=True, list_hook=count, object_hook=count,
            max_str_len=self.max_str_len, max_bin_len=self.max_bin_len,
            max_array_len=self.max_array_len, max_map_len=self.max_map_len,
            max_ext_len=self.max_ext_len)


FRAME_LIMITS = UnpackLimits(
    # A str or bin costs its wire size once, so the frame size bounds it; the field's own
    # limit is its handler's, which refuses with a clear error and keeps the connection
    # (a social text: 16 KiB, message_too_large; a relay envelope: 116,394 bytes).
    max_str_len=MAX_FRAME_SIZE, max_bin_len=MAX_FRAME_SIZE,
    # The longest list is one entry per device of a social account (get_devices,
    # fetch_bundles, a secret send's envelopes), which has no device limit: an envelope is at
    # least 62 bytes, so at most 16,912 fit in a frame. Every other list is shorter: a relay
    # group_deliver's envelopes <= 5,125, relay ack seqs <= 1000, private group members
    # <= 1,024, one-time prekeys <= 200 a request, history and search <= 100 messages, social
    # group members and a message's reactions <= 250.
    max_array_len=2**14,
    # The largest map has 12 keys (a social event push); room for fields a newer peer adds.
    max_map_len=32,
    # The most containers: a social history or search page, 100 messages each with its map,
    # its media map, its reactions list and up to 250 [account, emoji] pairs, in a list in the
    # frame map: 100 * 253 + 2 = 25,302. A relay frame needs far fewer: 203 (200 one-time
    # prekeys) in a request, 2,050 in a response (group_send's device_mismatch: 1,024 members,
    # each an [account, device ids] pair).
    max_containers=2**15)
"""What any frame of the protocol may hold, either way: the default of :class:`FrameDecoder`
(clients use it); each server bounds its requests tighter (``relay_api.REQUEST_LIMITS``,
``social_api.request_limits``)."""

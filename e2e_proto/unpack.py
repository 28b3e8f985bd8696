"""Unpacking msgpack from the network within bounds that the protocol derives.

Invariant: a document is unpacked only within its :class:`UnpackLimits`. As soon as a bound is
passed, unpacking stops with :class:`ValueError` (msgpack's own errors for bytes that are not
msgpack), so a peer's bytes cost at most what the bounds allow, however they are shaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack


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

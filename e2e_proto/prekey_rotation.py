"""Signed-prekey rotation: when a device makes a new signed prekey and deletes a replaced one.

Invariant: the signed prekey a device publishes is younger than the rotation interval (checked
whenever the device connects), and a replaced signed prekey's private key is kept for the grace
period after its successor was made, then deleted. The grace period is never shorter than the
mailbox TTL the device knows: a prekey message sent to the replaced key just before the
rotation can wait that long in a mailbox and must still be readable. Signed prekey ids only
grow, so a key's successor is the kept key with the next higher id. Pure: the time is always an
argument (seconds, as the caller's clock gives them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from .constants import MAILBOX_TTL, SIGNED_PREKEY_ROTATION_INTERVAL
from .errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class SignedPreKeyPolicy:
    """How often a device rotates its signed prekey, and how long it keeps a replaced one.

    A ``grace`` shorter than ``mailbox_ttl`` (the longest a message may wait for the device)
    is refused with :class:`~e2e_proto.errors.LocalProtocolError`.
    """

    interval: float = SIGNED_PREKEY_ROTATION_INTERVAL
    grace: float = MAILBOX_TTL
    mailbox_ttl: float = MAILBOX_TTL

    def __post_init__(self) -> None:
        for name in ("interval", "mailbox_ttl"):
            if not 0 < getattr(self, name) < math.inf:
                raise LocalProtocolError(f"the signed prekey {name} must be a positive time")
        if not self.mailbox_ttl <= self.grace < math.inf:
            raise LocalProtocolError(
                f"a replaced signed prekey must be kept at least as long as the mailbox TTL "
                f"({self.mailbox_ttl:g} s), not {self.grace:g} s")

    def rotation_due(self, created_at: float | None, now: float) -> bool:
        """Whether the current signed prekey, made at ``created_at``, must be replaced at ``now``.

        ``None`` (a key made before creation times were kept) is due at once.
        """
        return created_at is None or now - created_at >= self.interval

    def expired(self, created: Mapping[int, float | None], current_id: int,
                now: float) -> list[int]:
        """Ids of kept signed prekeys to delete at ``now``: replaced ones past the grace period.

        ``created`` maps each kept id to its creation time; a key was replaced when the next
        higher id was made. The current key, and a key whose successor's time is unknown, stay.
        """
        return [key_id for key_id, successor in pairwise(sorted(created))
                if key_id != current_id and (replaced := created[successor]) is not None
                and now - replaced >= self.grace]


DEFAULT_POLICY = SignedPreKeyPolicy()
"""Weekly rotation; a replaced signed prekey is kept for the relay's 30-day mailbox TTL."""

"""What each transport can do: one table (DESIGN §9) that clients and both servers enforce.

A feature a transport lacks is refused with :class:`UnsupportedFeatureError` and a clear
message, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import MAX_GROUP_MEMBERS
from .errors import LocalProtocolError

PRIVATE = "private"
SOCIAL = "social"


class UnsupportedFeatureError(LocalProtocolError):
    """The transport does not offer this feature."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """One transport's row of the feature table."""

    transport: str
    end_to_end: str  # "always" or "opt-in"
    max_devices: int | None  # None: unlimited
    reactions: str  # "text" (an encrypted payload of kind reaction) or "emoji"
    pinning: bool
    group_call_participants: int
    max_group_members: int
    server_history: bool
    database: str


CAPABILITIES: dict[str, Capabilities] = {
    PRIVATE: Capabilities(PRIVATE, "always", 5, "text", False, 8, MAX_GROUP_MEMBERS, False,
                          "relay.db"),
    SOCIAL: Capabilities(SOCIAL, "opt-in", None, "emoji", True, 50, 250, True, "social.db"),
}


def capabilities(transport: str) -> Capabilities:
    """The row of ``transport``; :class:`LocalProtocolError` for an unknown transport."""
    try:
        return CAPABILITIES[transport]
    except KeyError:
        raise LocalProtocolError(f"unknown transport {transport!r}") from None


def require(transport: str, feature: str) -> None:
    """Refuse ``feature`` (``pinning``, ``server_history``) where ``transport`` lacks it."""
    if not getattr(capabilities(transport), feature):
        names = {"pinning": "message pinning", "server_history": "server-side history"}
        raise UnsupportedFeatureError(
            f"{names.get(feature, feature)} is not supported on the {transport} transport")

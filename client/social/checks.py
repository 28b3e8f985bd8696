"""What the client refuses before it sends (empty or oversized texts, malformed names), and the
ids and seqs it accepts from the server."""

from __future__ import annotations

from e2e_proto import social_api as api
from e2e_proto.address import is_valid_account

from ..core.errors import ClientError


def check_text(text: str) -> None:
    """Refuse an empty or oversized message before it is sent."""
    if not text:
        raise ClientError("a message needs some text")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > api.MAX_TEXT_BYTES:
        raise ClientError(f"message too large: {size} bytes, at most {api.MAX_TEXT_BYTES}")


def check_name(name: str, what: str = "name") -> None:
    """Refuse a malformed account or group name."""
    if not is_valid_account(name):
        raise ClientError(f"invalid {what} {name[:64]!r}: use 1-64 lowercase letters, digits, "
                          "'_', '.' or '-', starting with a letter or digit")


def is_id(value: object) -> bool:
    """Whether the server sent a usable id or seq (a positive 63-bit integer)."""
    return type(value) is int and 0 < value < 2**63

"""Call join tokens: what a server gives a participant so that the forwarding unit admits it.

Invariant: a token verifies only under the call key that made it (the key the server shares
with its forwarding unit) and only before its expiry, and it binds one participant of one call
to one (account, device). The participant's packet key is derived from the whole token body
under the same call key, so the forwarding unit recomputes it from the token alone, and nobody
who only sees the token (it travels in the clear, in the JOIN datagram) learns it.

Layout (integers big-endian, docs/PROTOCOL.md §18.3)::

    body       = version (1) || call_id (16) || participant (4) || device (4) || expires_ms (8)
                 || limit (2) || nonce (16) || len(account) (1) || account (ASCII)
    token      = body || HMAC-SHA256(call_key, "e2e-proto/call-token/v1" || body)
    packet_key = HMAC-SHA256(call_key, "e2e-proto/call-packet-key/v1" || body)

``limit`` is the transport's participant cap, which the forwarding unit enforces too.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from .address import Address, is_valid_account
from .constants import (
    CALL_ID_SIZE,
    CALL_KEY_SIZE,
    CALL_PACKET_KEY_PREFIX,
    CALL_TOKEN_NONCE_SIZE,
    CALL_TOKEN_PREFIX,
    CALL_TOKEN_TAG_SIZE,
    CALL_TOKEN_VERSION,
    MAX_ACCOUNT_LENGTH,
    MAX_CALL_PARTICIPANT_ID,
    MAX_CALL_PARTICIPANTS,
)
from .errors import CallTokenError, ExpiredCallTokenError, LocalProtocolError
from .primitives import RandomSource, hmac_sha256, system_random

_FIXED = struct.Struct(">B16sIIQH16sB")
MIN_TOKEN_SIZE = _FIXED.size + 1 + CALL_TOKEN_TAG_SIZE
MAX_TOKEN_SIZE = _FIXED.size + MAX_ACCOUNT_LENGTH + CALL_TOKEN_TAG_SIZE


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A verified token's fields; ``body`` is the signed part (the packet key's input)."""

    call_id: bytes
    participant: int
    address: Address
    expires_ms: int
    limit: int
    nonce: bytes
    body: bytes


def check_call_key(call_key: bytes) -> None:
    """Refuse (:class:`LocalProtocolError`) a call key that is not 32 bytes."""
    if type(call_key) is not bytes or len(call_key) != CALL_KEY_SIZE:
        raise LocalProtocolError(f"a call key is {CALL_KEY_SIZE} bytes")


def packet_key(call_key: bytes, body: bytes) -> bytes:
    """The packet key of the participant a token ``body`` admits (32 bytes)."""
    return hmac_sha256(call_key, CALL_PACKET_KEY_PREFIX + body)


def issue_token(call_key: bytes, call_id: bytes, participant: int, address: Address,
                expires_ms: int, limit: int,
                random: RandomSource = system_random) -> tuple[bytes, bytes]:
    """(token, packet key) admitting ``address`` as ``participant`` of ``call_id``."""
    check_call_key(call_key)
    if type(call_id) is not bytes or len(call_id) != CALL_ID_SIZE:
        raise LocalProtocolError(f"a call id is {CALL_ID_SIZE} bytes")
    if type(participant) is not int or not 1 <= participant <= MAX_CALL_PARTICIPANT_ID:
        raise LocalProtocolError("a participant id is in 1 .. 2**32-1")
    if type(expires_ms) is not int or not 0 <= expires_ms < 2**64:
        raise LocalProtocolError("a token's expiry is a u64 of milliseconds")
    if type(limit) is not int or not 1 <= limit <= MAX_CALL_PARTICIPANTS:
        raise LocalProtocolError(f"a call's limit is 1 .. {MAX_CALL_PARTICIPANTS}")
    account, device = Address.checked(*address)
    name = account.encode("ascii")
    body = _FIXED.pack(CALL_TOKEN_VERSION, call_id, participant, device, expires_ms, limit,
                       random(CALL_TOKEN_NONCE_SIZE), len(name)) + name
    return body + hmac_sha256(call_key, CALL_TOKEN_PREFIX + body), packet_key(call_key, body)


def verify_token(call_key: bytes, token: bytes, now_ms: int) -> JoinToken:
    """The fields of ``token`` once its tag verifies under ``call_key`` and it has not expired.

    :class:`CallTokenError` for a token that is malformed, of another version or whose tag does
    not verify (the fields are not read before the tag is checked);
    :class:`ExpiredCallTokenError` once ``now_ms`` has reached its expiry.
    """
    check_call_key(call_key)
    if type(token) is not bytes or not MIN_TOKEN_SIZE <= len(token) <= MAX_TOKEN_SIZE:
        raise CallTokenError("a join token has the wrong size")
    body, tag = token[:-CALL_TOKEN_TAG_SIZE], token[-CALL_TOKEN_TAG_SIZE:]
    if not hmac.compare_digest(hmac_sha256(call_key, CALL_TOKEN_PREFIX + body), tag):
        raise CallTokenError("the join token's tag does not verify")
    (version, call_id, participant, device, expires_ms, limit, nonce,
     length) = _FIXED.unpack_from(body)
    account = body[_FIXED.size:].decode("ascii", errors="replace")
    if (version != CALL_TOKEN_VERSION or length != len(body) - _FIXED.size
            or not is_valid_account(account) or participant == 0
            or not 1 <= limit <= MAX_CALL_PARTICIPANTS):
        raise CallTokenError("the join token is malformed")
    if now_ms >= expires_ms:
        raise ExpiredCallTokenError("the join token has expired")
    return JoinToken(call_id, participant, Address(account, device), expires_ms, limit, nonce,
                     body)

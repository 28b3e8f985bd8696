"""The social server's request vocabulary, shared by the social server and its client.

Frames are the relay's (:mod:`e2e_proto.wire`): requests ``{id, type, ...}``, responses
``{id, ok: true, ...}`` or ``{id, error: {code, message}}``, pushes without ``id``.
docs/SOCIAL.md lists every request, field and error code.
"""

from __future__ import annotations

from typing import Any

import emoji
import msgpack

from .blob_api import (
    BLOB_HASH_MISMATCH,
    BLOB_INCOMPLETE,
    BLOB_OFFSET,
    BLOB_TAKEN,
    BLOB_TOO_LARGE,
    UNKNOWN_BLOB,
)
from .blob_api import QUOTA_EXCEEDED as BLOB_QUOTA_EXCEEDED

# The call codes are part of this API's vocabulary (docs/PROTOCOL.md §18.2).
from .call_api import CALL_FULL as CALL_FULL
from .call_api import CALLS_UNAVAILABLE as CALLS_UNAVAILABLE
from .call_api import NOT_INVITED as NOT_INVITED
from .call_api import NOT_PARTICIPANT as NOT_PARTICIPANT
from .call_api import TOO_MANY_CALLS as TOO_MANY_CALLS
from .call_api import UNKNOWN_CALL as UNKNOWN_CALL
from .capabilities import CAPABILITIES, SOCIAL
from .constants import MAX_ACCOUNT_LENGTH, MAX_FRAME_SIZE

# The codes of cross-transport requests are part of it too (docs/PROTOCOL.md §19.4).
from .federation import ALREADY_LINKED as ALREADY_LINKED
from .federation import CROSS_DISABLED as CROSS_DISABLED
from .federation import LINK_REFUSED as LINK_REFUSED
from .federation import NOT_LINKED as NOT_LINKED
from .federation import PEER_UNAVAILABLE as PEER_UNAVAILABLE
from .unpack import UnpackLimits

CLIENT_ID_SIZE = 16
"""A send's optional idempotency key: a resend with the same key is not a new message."""

# Error codes (``error.code``); each has one meaning a client can act on.
BAD_REQUEST = "bad_request"
UNSUPPORTED = "unsupported"
FRAME_TOO_LARGE = "frame_too_large"
RATE_LIMITED = "rate_limited"
TOO_MANY_CONNECTIONS = "too_many_connections"  # too many connections waiting to log in
NOT_AUTHENTICATED = "not_authenticated"
AUTH_FAILED = "auth_failed"  # wrong account name or password
BAD_TOKEN = "bad_token"  # a session token the server does not know
TOKEN_EXPIRED = "token_expired"
NAME_TAKEN = "name_taken"
WEAK_PASSWORD = "weak_password"
UNKNOWN_ACCOUNT = "unknown_account"
UNKNOWN_DEVICE = "unknown_device"  # revoke_device: no such device of the caller's account
UNKNOWN_CONVERSATION = "unknown_conversation"
UNKNOWN_MESSAGE = "unknown_message"
NOT_MEMBER = "not_member"
MESSAGE_TOO_LARGE = "message_too_large"
INVALID_REACTION = "invalid_reaction"
GROUP_TOO_LARGE = "group_too_large"
SECRET_CONVERSATION = "secret_conversation"  # plaintext (or a reaction) sent to a secret one
NOT_SECRET = "not_secret"  # envelopes sent to a plaintext conversation
DEVICE_MISMATCH = "device_mismatch"
NO_PREKEYS = "no_prekeys"
KEY_CHANGED = "key_changed"
UNAVAILABLE = "unavailable"  # the server cannot read or write its storage now
STALE_DEVICE_LIST = "stale_device_list"  # a cross device list not newer than the stored one
# The blob store's codes (:mod:`e2e_proto.blob_api`), answered here too.
BLOB_ERROR_CODES = (
    UNKNOWN_BLOB, BLOB_TAKEN, BLOB_TOO_LARGE, BLOB_QUOTA_EXCEEDED, BLOB_OFFSET, BLOB_INCOMPLETE,
    BLOB_HASH_MISMATCH)

MAX_TEXT_BYTES = 16 * 1024
"""Largest message text, in UTF-8 bytes."""
MAX_ENVELOPE_BYTES = MAX_TEXT_BYTES + 1024
"""Largest secret-conversation envelope: the padded payload plus envelope overhead."""
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 1024
MAX_HISTORY_PAGE = 100
MAX_SEARCH_RESULTS = 100
MAX_GROUP_MEMBERS = CAPABILITIES[SOCIAL].max_group_members
TOKEN_SIZE = 32
MAX_ONE_TIME_PREKEYS_PER_REQUEST = 200
MAX_SECRET_ENVELOPES = 2**14
"""The most envelopes one secret ``send`` carries (one per device of its members, who have no
device limit; an envelope is at least 62 bytes, so at most 16,912 fit in a frame): the
longest list a request frame may hold."""


def _largest_unauthenticated_requests() -> list[dict[str, Any]]:
    """Each request a client may send before logging in, every field at its largest."""
    account, header = "a" * MAX_ACCOUNT_LENGTH, {"id": 2**64 - 1}
    return [
        {**header, "type": "register", "account": account,
         "password": "\U0010ffff" * (MAX_PASSWORD_BYTES // 4)},
        {**header, "type": "login", "account": account,
         "password": "\U0010ffff" * (MAX_PASSWORD_BYTES // 4)},
        {**header, "type": "auth", "token": bytes(TOKEN_SIZE)},
        {**header, "type": "ping"},
    ]


MAX_UNAUTHENTICATED_REQUEST_SIZE = max(
    len(msgpack.packb(request)) for request in _largest_unauthenticated_requests())
"""The largest frame body a client may need before it logs in, in bytes: computed by encoding
each such request with every field at its largest (``register`` with a 64-character name and a
1024-byte password, 1,137 bytes). The server refuses larger frames before login."""


def request_limits(max_one_time_prekeys: int = MAX_ONE_TIME_PREKEYS_PER_REQUEST
                   ) -> UnpackLimits:
    """What a request frame to the social server may hold, for a server that takes at most
    ``max_one_time_prekeys`` in one ``publish_prekeys``."""
    return UnpackLimits(
        # Texts and envelopes are the user's: their handlers refuse one that is too long
        # (message_too_large, with the limit) and keep the connection, so only the frame
        # bounds them here (a str or bin costs its wire size once).
        max_str_len=MAX_FRAME_SIZE, max_bin_len=MAX_FRAME_SIZE,
        # The longest list: a secret send's envelopes (MAX_SECRET_ENVELOPES). Members (250,
        # group_too_large above), one-time prekeys and device ids are fewer.
        max_array_len=MAX_SECRET_ENVELOPES,
        max_map_len=32,  # the most keys: 6 (send); room for fields a newer client adds
        # The most containers: publish_prekeys: the frame's map, the one_time_prekeys list,
        # its [id, key] pairs and the signed prekey.
        max_containers=3 + max_one_time_prekeys)


def is_single_emoji(text: object) -> bool:
    """Whether ``text`` is exactly one emoji (one grapheme: ZWJ, skin tone, flag, keycap)."""
    return type(text) is str and 0 < len(text) <= 32 and emoji.is_emoji(text)


def parse_message_id(text: str) -> int:
    """A message id as typed by a user (decimal, as ``recv --json`` shows it).

    Raises :class:`ValueError` for anything else.
    """
    text = text.strip()
    if not text.isdecimal() or not text.isascii() or len(text) > 19:
        raise ValueError(f"invalid message id {text[:40]!r}: expected a number as shown by "
                         "recv --json or history")
    return int(text)

"""The relay's request vocabulary, shared by the relay and its clients (DESIGN §8).

Frames are msgpack maps (:mod:`e2e_proto.wire`). A request carries ``id`` (int) and ``type``;
its response echoes ``id`` with ``ok: true`` and result fields, or ``error: {code, message}``.
The relay pushes frames without ``id``: ``challenge``, ``deliver``, ``queue_empty``,
``prekeys_low``. docs/PROTOCOL.md §10 lists every field.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .address import is_valid_device_id
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
from .constants import (
    AUTH_PREFIX,
    KEY_SIZE,
    MAX_ACCOUNT_LENGTH,
    MAX_DEVICE_ID,
    MAX_DEVICES,
    MAX_FRAME_SIZE,
    MAX_GROUP_MEMBERS,
    SIGNATURE_SIZE,
)
from .errors import E2EProtoError, MalformedError

# The codes of cross-transport requests are part of it too (docs/PROTOCOL.md §19.4).
from .federation import ALREADY_LINKED as ALREADY_LINKED
from .federation import CROSS_DISABLED as CROSS_DISABLED
from .federation import LINK_REFUSED as LINK_REFUSED
from .federation import NOT_LINKED as NOT_LINKED
from .federation import PEER_UNAVAILABLE as PEER_UNAVAILABLE
from .keys import Ed25519PublicKey, PreKeyBundle, X25519PublicKey
from .primitives import hmac_sha256, sha512
from .unpack import UnpackLimits

# Error codes (``error.code``); each has one meaning a client can act on.
BAD_REQUEST = "bad_request"
UNSUPPORTED = "unsupported"
FRAME_TOO_LARGE = "frame_too_large"
NOT_AUTHENTICATED = "not_authenticated"
AUTH_FAILED = "auth_failed"
NAME_TAKEN = "name_taken"
UNKNOWN_ACCOUNT = "unknown_account"
DEVICE_MISMATCH = "device_mismatch"
STALE_DEVICE_LIST = "stale_device_list"
TOO_MANY_DEVICES = "too_many_devices"
QUOTA_EXCEEDED = "quota_exceeded"
RATE_LIMITED = "rate_limited"
NO_PREKEYS = "no_prekeys"
UNKNOWN_LINK = "unknown_link"
NOT_PRIMARY = "not_primary"
DEVICE_UNLINKED = "device_unlinked"
INTERNAL = "internal"
UNAVAILABLE = "unavailable"
TOO_MANY_CONNECTIONS = "too_many_connections"  # per account, or waiting to authenticate
MESSAGE_TOO_LARGE = "message_too_large"  # an envelope over the relay's maximum (``limit``)
UNKNOWN_GROUP = "unknown_group"
NOT_GROUP_ADMIN = "not_group_admin"
NOT_GROUP_MEMBER = "not_group_member"
STALE_GROUP = "stale_group"  # a routing copy not newer than the relay's, or a send from another
GROUP_TOO_LARGE = "group_too_large"
# The blob store's codes (:mod:`e2e_proto.blob_api`), answered here too.
BLOB_ERROR_CODES = (
    UNKNOWN_BLOB, BLOB_TAKEN, BLOB_TOO_LARGE, BLOB_QUOTA_EXCEEDED, BLOB_OFFSET, BLOB_INCOMPLETE,
    BLOB_HASH_MISMATCH)

NONCE_SIZE = 32
MAX_DEVICE_NAME_LENGTH = 64
"""The longest name a new device gives itself in ``link_request``, in characters."""
MAX_ONE_TIME_PREKEYS_PER_REQUEST = 200
MAX_ACK_SEQS = 1000
"""The most seqs one ``ack`` may list. Its deletes run inside the relay's shared group commit,
so a longer list would stall every client's sends; 1000 deletes take about a millisecond. A
client acknowledges what it has stored, in chunks of at most this many."""
MAX_SEND_ENVELOPES = 2 * MAX_DEVICES - 1
"""The most envelopes one ``send`` carries: every device of the recipient and every other
device of the sender."""
SEND_FRAME_ALLOWANCE = 1024
"""Room in a ``send`` frame for everything but the envelopes' bytes: the keys, ``id``,
``type``, ``to`` (at most 64 bytes), a msgpack header per envelope and up to
``blob_api.MAX_BLOBS_PER_MESSAGE`` (16) blob ids, 674 bytes at most."""
MAX_ENVELOPE_SIZE = (MAX_FRAME_SIZE - SEND_FRAME_ALLOWANCE) // MAX_SEND_ENVELOPES
"""The largest envelope the relay stores (116,394 bytes): the largest for which any ``send``,
even one of nine envelopes, fits in one frame. A client must send larger content in parts. The
same bound holds for what ``group_send`` stores per device and for ``group_deliver``'s
envelopes."""
MAX_GROUP_DELIVER_ENVELOPES = (MAX_GROUP_MEMBERS + 1) * MAX_DEVICES
"""The most envelopes one ``group_deliver`` may carry: its handler allows (members + 1) *
MAX_DEVICES for a group, 5,125 for one of the most members."""

REQUEST_LIMITS = UnpackLimits(
    # The longest str: a device name of 64 characters of at most 4 UTF-8 bytes each (account
    # names have at most 64 ASCII bytes, request types 14).
    max_str_len=4 * MAX_DEVICE_NAME_LENGTH,
    # The longest bin: an envelope, a group message, a routing statement (80 KiB) or an
    # ``upload_chunk``'s data (BLOB_CHUNK_SIZE, 1 MiB less 1 KiB). Their handlers refuse one
    # over their own limit with a clear error and keep the connection, so only the frame bounds
    # them here (a bin costs its wire size once).
    max_bin_len=MAX_FRAME_SIZE,
    # The longest list: ``group_deliver``'s envelopes (MAX_GROUP_DELIVER_ENVELOPES = 5,125 for
    # a group of 1,024 members; its handler refuses more for a smaller group with a clear
    # error), then ``ack`` seqs (MAX_ACK_SEQS = 1,000, likewise), one-time prekeys (200), blob
    # ids (16), envelopes of a ``send`` (9), device ids (5). The next power of two above them.
    max_array_len=1 << (MAX_GROUP_DELIVER_ENVELOPES - 1).bit_length(),
    # The most keys: link_request, 10 with id and type; room for fields a newer client adds.
    max_map_len=32,
    # The most containers: link_request or publish_prekeys with 200 one-time prekeys: the
    # frame's map, the one_time_prekeys list, its 200 [id, key] pairs and the signed prekey.
    # Every other request is a map of flat lists (send: envelopes and blobs; group_send:
    # blobs).
    max_containers=3 + MAX_ONE_TIME_PREKEYS_PER_REQUEST)
"""What a request frame to the relay may hold (the relay's :class:`FrameDecoder` limits)."""
FIRST_DEVICE_LIST_VERSION = 1
"""The version of a new account's device list; ``register`` refuses any other."""
_BE32 = struct.Struct(">I")


def auth_message(nonce: bytes, account: str, device_id: int) -> bytes:
    """The bytes a device signs to authenticate: prefix || nonce || account || device_id BE32."""
    return AUTH_PREFIX + nonce + account.encode() + _BE32.pack(device_id)


LINK_LOOKUP_PREFIX = b"e2e-proto/link-lookup/v1"
LINK_TAG_PREFIX = b"e2e-proto/link-code/v1"
LINK_SECRET_SIZE = 10
LOOKUP_SIZE = 16


def link_lookup(secret: bytes) -> bytes:
    """Where the relay files a pending link: SHA-512(prefix || secret), first 16 bytes."""
    return sha512(LINK_LOOKUP_PREFIX + secret)[:LOOKUP_SIZE]


def link_tag(secret: bytes, account: str, identity_key: bytes) -> bytes:
    """HMAC-SHA256(secret, prefix || dik || account): binds the link code to the new key."""
    return hmac_sha256(secret, LINK_TAG_PREFIX + identity_key + account.encode())


LINK_PROOF_PREFIX = b"e2e-proto/link-proof/v1"


def link_proof(secret: bytes, account_key: bytes, account: str, device_id: int) -> bytes:
    """HMAC-SHA256(secret, prefix || aik || account || device_id BE32): the primary's answer.

    Only a device that saw the link code can make it, so the new device knows that the
    account's primary (not the relay) approved it.
    """
    return hmac_sha256(secret, LINK_PROOF_PREFIX + account_key + account.encode()
                       + _BE32.pack(device_id))


def link_signatures_from_wire(value: object) -> dict[int, bytes]:
    """``get_devices``' ``link_signatures``, ``[[device_id, signature], ...]``, as a map.

    At most one per device of a list (:data:`~e2e_proto.constants.MAX_DEVICES`), distinct u32
    ids, 64-byte signatures; :class:`MalformedError` otherwise. Checking them is
    :meth:`~e2e_proto.devices.SignedDeviceList.check_links`' job.
    """
    if type(value) is not list or len(value) > MAX_DEVICES:
        raise MalformedError(f"link_signatures must be a list of at most {MAX_DEVICES}")
    try:
        signatures = {device_id: signature for device_id, signature in value}
    except (ValueError, TypeError):
        raise MalformedError("link_signatures must be [device_id, signature] pairs") from None
    if len(signatures) != len(value) or not all(
            is_valid_device_id(i) and type(s) is bytes and len(s) == SIGNATURE_SIZE
            for i, s in signatures.items()):
        raise MalformedError("link_signatures must name distinct devices, 64 bytes each")
    return signatures


def bundle_to_wire(device_id: int, bundle: PreKeyBundle) -> list[Any]:
    """``[device_id, dik, spk_id, spk, spk_signature, opk_id or nil, opk or nil]``."""
    return [device_id, bundle.identity_key.raw, bundle.signed_prekey_id, bundle.signed_prekey.raw,
            bundle.signed_prekey_signature, bundle.one_time_prekey_id,
            None if bundle.one_time_prekey is None else bundle.one_time_prekey.raw]


def bundle_from_wire(fields: object) -> tuple[int, PreKeyBundle]:
    """Inverse of :func:`bundle_to_wire`; :class:`MalformedError` on a wrong shape.

    The signature is not checked here: :func:`e2e_proto.x3dh.initiate` verifies it before use.
    """
    try:
        device_id, dik, spk_id, spk, signature, opk_id, opk = fields  # type: ignore[misc]
        if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            raise ValueError
        if opk is not None and (type(opk) is not bytes or len(opk) != KEY_SIZE):
            raise ValueError
        return device_id, PreKeyBundle(
            Ed25519PublicKey(dik), spk_id, X25519PublicKey(spk), signature, opk_id,
            None if opk is None else X25519PublicKey(opk))
    except (ValueError, TypeError, E2EProtoError):
        raise MalformedError("prekey bundle is malformed") from None


def _largest_unauthenticated_requests() -> list[dict[str, Any]]:
    """Each request a client may send before authenticating, every field at its largest."""
    account, key, signature = "a" * MAX_ACCOUNT_LENGTH, bytes(KEY_SIZE), bytes(SIGNATURE_SIZE)
    header = {"id": 2**64 - 1}  # any msgpack int is a valid id
    device_list = msgpack.packb([account, FIRST_DEVICE_LIST_VERSION, [[0, key]]])
    return [
        {**header, "type": "register", "account": account, "account_key": key,
         "device_list": device_list, "device_list_signature": signature,
         "signature": signature},
        {**header, "type": "auth", "account": account, "device_id": MAX_DEVICE_ID,
         "signature": signature},
        {**header, "type": "get_devices", "account": account},
        {**header, "type": "ping"},
        {**header, "type": "link_request", "account": account, "lookup": bytes(LOOKUP_SIZE),
         "tag": bytes(32), "name": "\U0010ffff" * MAX_DEVICE_NAME_LENGTH,  # 4 UTF-8 bytes each
         "identity_key": key, "link_signature": signature,
         "signed_prekey": [MAX_DEVICE_ID, key, signature],
         "one_time_prekeys": [[MAX_DEVICE_ID, key]] * MAX_ONE_TIME_PREKEYS_PER_REQUEST},
    ]


MAX_UNAUTHENTICATED_REQUEST_SIZE = max(
    len(msgpack.packb(request)) for request in _largest_unauthenticated_requests())
"""The largest frame body a client may need before it authenticates, in bytes: computed by
encoding each such request with every field at its largest (a ``link_request`` with 200
one-time prekeys and a 64-character name, 8,700 bytes). The relay refuses larger frames from a
connection that has not authenticated."""


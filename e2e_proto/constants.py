"""Constants with protocol meaning (DESIGN §2–§8, §13–§16). Changing one breaks interop."""

from __future__ import annotations

# Key and primitive sizes.
KEY_SIZE = 32
SIGNATURE_SIZE = 64
NONCE_SIZE = 24  # XChaCha20-Poly1305-IETF
TAG_SIZE = 16

# Domain-separation strings.
SPK_SIGNATURE_PREFIX = b"e2e-proto/spk/v1"
DEVICE_LIST_PREFIX = b"e2e-proto/device-list/v1"
DEVICE_LINK_PREFIX = b"e2e-proto/device-link/v1"
AUTH_PREFIX = b"e2e-proto/auth/v1"
GROUP_SIGNATURE_PREFIX = b"e2e-proto/group/v1"
GROUP_UPDATE_PREFIX = b"e2e-proto/group-update/v1"
GROUP_ROUTING_PREFIX = b"e2e-proto/group-routing/v1"
GROUP_DEVICES_PREFIX = b"e2e-proto/group-devices/v1"

# X3DH (DESIGN §3).
X3DH_INFO = b"E2EProto X3DH v1"
X3DH_SALT = bytes(32)
X3DH_PAD = b"\xff" * 32

# Double Ratchet (DESIGN §4).
RATCHET_INFO = b"E2EProto Ratchet v1"
MESSAGE_KEY_SEED = b"\x01"
CHAIN_KEY_SEED = b"\x02"
MAX_SKIP = 2000
MAX_SKIPPED_KEYS = 2000

# Signed-prekey rotation (DESIGN §3; docs/PROTOCOL.md §10.2). Times are in seconds.
DAY = 24 * 60 * 60
SIGNED_PREKEY_ROTATION_INTERVAL = 7 * DAY
"""A device makes and publishes a new signed prekey once its current one is this old."""
MAILBOX_TTL = 30 * DAY
"""How long the relay keeps an unacknowledged message (``RelayConfig.mailbox_ttl``): the least
time a replaced signed prekey is kept, so a prekey message waiting in a mailbox can be read."""

# Sessions (DESIGN §3).
MAX_REMEMBERED_BASE_KEYS = 40
"""Base keys of dropped sessions a session record remembers, newest first (libsignal keeps 40
archived session states): a prekey message naming one is a replay and is refused."""

# Payloads (DESIGN §5).
PADDING_BLOCK = 64
PAYLOAD_ID_SIZE = 16

# Wire (DESIGN §5, §8).
ENVELOPE_VERSION = 1
MAX_FRAME_SIZE = 1024 * 1024
MAX_ACCOUNT_LENGTH = 64
MAX_DEVICE_ID = 2**32 - 1

# Safety numbers (DESIGN §7).
FINGERPRINT_VERSION = 0
FINGERPRINT_ITERATIONS = 5200

# Devices (DESIGN §6).
PRIMARY_DEVICE_ID = 0
MAX_LINKED_DEVICES = 4
MAX_DEVICES = 1 + MAX_LINKED_DEVICES

# Sender keys for groups (DESIGN §13; the limits are libsignal's).
GROUP_ID_SIZE = 16
CHAIN_ID_SIZE = 4  # random bytes of a u32 chain id, big-endian
SENDER_KEY_ITERATION_LIMIT = 2**32 - 1
"""A chain's next iteration is a u32, so messages use iterations below this one."""
GROUP_MESSAGE_VERSION = 1
MAX_GROUP_HEADER_SIZE = 29
"""The longest header ``[bin 16, u32, u32]``: 1 (array) + 2 + 16 (bin) + 5 + 5 (u32s) bytes."""
MAX_SENDER_KEY_FORWARD = 25_000
"""Most message keys one group message may make a receiver skip (libsignal's MAX_FORWARD_JUMPS)."""
MAX_SENDER_KEY_SKIPPED = 2000
"""Skipped message keys kept per sender-key chain, oldest evicted (libsignal's MAX_MESSAGE_KEYS)."""
MAX_SENDER_KEY_CHAINS = 5
"""Chains kept per (group, sender device), oldest evicted (libsignal's MAX_SENDER_KEY_STATES)."""

# Group membership on the private transport (DESIGN §13): signed end to end by an admin device.
MAX_GROUP_MEMBERS = 1024
"""Members of one private-transport group (WhatsApp's limit; the capability table's value)."""
MAX_GROUP_NAME_LENGTH = 64
"""Characters of a group's name (printable, not empty)."""
MAX_GROUP_STATE_SIZE = 80 * 1024
"""Bytes of a signed group state: 1024 members of 64 characters and 1024 admin indices fit."""
MAX_GROUP_VERSION = 2**63 - 1

# Encrypted media (DESIGN §14): libsodium crypto_secretstream_xchacha20poly1305.
MEDIA_KEY_SIZE = 32
MEDIA_HEADER_SIZE = 24  # the secretstream header sent beside the key
MEDIA_CHUNK_SIZE = 64 * 1024  # plaintext bytes per chunk; the last chunk holds 0..64 KiB
MEDIA_CHUNK_OVERHEAD = 17  # secretstream ABYTES: one encrypted tag byte + a 16-byte MAC
MEDIA_BLOB_ID_SIZE = 32  # SHA-256 of the whole ciphertext
MEDIA_SHA256_SIZE = 32  # optional SHA-256 of the plaintext (deduplication only)
MAX_MEDIA_SIZE = 100 * 1024 * 1024  # plaintext bytes of one attachment
MAX_MEDIA_MIME_LENGTH = 255  # "type/subtype", RFC 6838 restricted names (127 + 1 + 127)
MAX_MEDIA_NAME_LENGTH = 255  # characters of the sender's suggested file name
MAX_MEDIA_CAPTION_LENGTH = 4096  # characters
MAX_SAFE_FILE_NAME_BYTES = 255  # UTF-8 bytes of a name from safe_file_name (NAME_MAX)
SAFE_FILE_NAME_FALLBACK = "attachment"  # what safe_file_name returns when nothing is left

# SFrame (RFC 9605) for calls (DESIGN §15): cipher suite AES_256_GCM_SHA512_128.
SFRAME_CIPHER_SUITE = 0x0005
SFRAME_HASH_SIZE = 64  # Nh (SHA-512)
SFRAME_KEY_SIZE = 32  # Nk (AES-256)
SFRAME_NONCE_SIZE = 12  # Nn
SFRAME_TAG_SIZE = 16  # Nt (the full GCM tag)
SFRAME_KEY_LABEL = b"SFrame 1.0 Secret key "
SFRAME_SALT_LABEL = b"SFrame 1.0 Secret salt "
SFRAME_RATCHET_LABEL = b"SFrame 1.0 Ratchet"
SFRAME_MAX_VALUE = 2**64 - 1  # KID and CTR are at most 8 bytes in the header
SFRAME_BASE_KEY_SIZE = 32  # a fresh base key; ratcheted base keys are Nh = 64 bytes
SFRAME_MIN_BASE_KEY_SIZE = 16  # RFC 9605's own vectors use 16-byte base keys
SFRAME_RATCHET_BITS = 8  # R of RFC 9605 §5.1: KID = (key_generation << 8) | ratchet_step % 256
SFRAME_MAX_KEY_GENERATION = 2 ** (64 - SFRAME_RATCHET_BITS) - 1
SFRAME_MAX_RATCHET_JUMP = 32  # a receiver follows a sender at most this many steps at once
SFRAME_KEPT_RATCHET_STEPS = 2  # older steps a receiver keeps per generation, for reordering

# Calls (DESIGN §15; docs/PROTOCOL.md §18): join tokens, forwarding-unit datagrams, key payloads.
CALL_ID_SIZE = 16
CALL_KEY_SIZE = 32  # the key a server shares with its forwarding unit (a token's MAC key)
CALL_TOKEN_VERSION = 1
CALL_TOKEN_PREFIX = b"e2e-proto/call-token/v1"  # HMAC-SHA256(call key, prefix || body): the tag
CALL_PACKET_KEY_PREFIX = b"e2e-proto/call-packet-key/v1"  # a participant's packet key
CALL_TOKEN_NONCE_SIZE = 16
CALL_TOKEN_TAG_SIZE = 32
CALL_TOKEN_TTL_MS = 60_000  # a token admits its holder to the forwarding unit within a minute
CALL_PACKET_VERSION = 1
CALL_PACKET_TAG_SIZE = 16  # HMAC-SHA256 truncated to 128 bits, on every participant datagram
MAX_CALL_DATAGRAM = 16 * 1024  # largest datagram either side sends or accepts
CALL_REPLAY_WINDOW = 128  # packet counters a forwarding unit accepts behind the highest one
MAX_CALL_PARTICIPANTS = 255  # a hard bound on any call, above both transports' caps
MAX_CALL_PARTICIPANT_ID = 2**32 - 1  # a participant id (pid) is a u32 >= 1
CALL_KEPT_GENERATIONS = 2  # a receiver holds a sender's newest key generation and the one before
CALL_FRAME_HEADER_SIZE = 16  # a synthetic media frame: kind, flags, seq, sent-at (see call_media)
CALL_FRAME_CHECKSUM_SIZE = 4  # CRC-32 of everything before it

# Profiles and status updates (DESIGN §16; docs/PROTOCOL.md §19.1), both transports.
MAX_PROFILE_NAME_LENGTH = 64  # characters of a display name
MAX_PROFILE_ABOUT_LENGTH = 500  # characters of a profile's "about" text
MAX_STATUS_TEXT_LENGTH = 700  # characters of one status update
STATUS_TTL_MS = DAY * 1000  # a status update is shown for 24 hours after it was posted
MAX_STATUSES = 30  # live status updates kept (and shared) per account, newest first
MAX_PROFILE_VERSION = 2**63 - 1

# Between the transports (DESIGN §16; docs/PROTOCOL.md §19): domain-separation strings.
CROSS_DEVICE_LIST_PREFIX = b"e2e-proto/cross-device-list/v1"
CROSS_DEVICE_LINK_PREFIX = b"e2e-proto/cross-device-link/v1"
ACCOUNT_LINK_VERSION = 1
ACCOUNT_LINK_PRIVATE_PREFIX = b"e2e-proto/account-link/private/v1"  # the private AIK signs
ACCOUNT_LINK_SOCIAL_PREFIX = b"e2e-proto/account-link/social/v1"  # the social device key signs
ACCOUNT_UNLINK_PREFIX = b"e2e-proto/account-unlink/v1"
LINK_ID_SIZE = 16
LINK_STATEMENT_MAX_AGE_MS = 10 * 60 * 1000
"""A link statement is accepted within ten minutes of the time it names (either way)."""
MAX_SHARED_DEVICE_NAME_LENGTH = 64  # characters of a device name (the relay's limit)

# The server-to-server link (DESIGN §16; docs/PROTOCOL.md §19.3).
PEER_KEY_SIZE = 32  # the key both servers read from their --peer-key-file
PEER_NONCE_SIZE = 32
PEER_HELLO_PREFIX = b"e2e-proto/peer-hello/v1"
PEER_WELCOME_PREFIX = b"e2e-proto/peer-welcome/v1"
PEER_SESSION_INFO = b"e2e-proto/peer-session/v1"
MAX_PEER_FRAMES = 2**64 - 1  # sealed frames one direction of one connection may carry

"""Constants with protocol meaning (DESIGN §2–§8, §13). Changing one breaks interoperability."""

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

"""The one error hierarchy of e2e_proto, split as h11 splits it.

* :class:`LocalProtocolError`: the caller misused the API (no session for an address, a
  wrongly typed argument). Fix the calling code.
* :class:`RemoteProtocolError`: the peer (or the network) sent bad data: malformed bytes, a bad
  signature, a replay, an unknown version. Report it and carry on; nothing was changed.

Every failure a caller must tell apart has its own class.
"""

from __future__ import annotations


class E2EProtoError(Exception):
    """Base class of every error raised by e2e_proto."""


class LocalProtocolError(E2EProtoError):
    """The API was used wrongly by the local caller."""


class NoSessionError(LocalProtocolError):
    """There is no session with the given remote device."""


class RemoteProtocolError(E2EProtoError):
    """The remote party sent data that cannot be accepted; local state is unchanged."""


class MalformedError(RemoteProtocolError):
    """Bytes that do not decode to a well-formed frame, envelope, payload or state."""


class UnsupportedVersionError(RemoteProtocolError):
    """A version field names a version this implementation does not speak."""


class FrameTooLargeError(RemoteProtocolError):
    """A frame announces a length above the configured maximum."""


class InvalidSignatureError(RemoteProtocolError):
    """An Ed25519 signature does not verify."""


class InvalidKeyError(RemoteProtocolError):
    """A public key is unusable: wrong length, or it gives an all-zero DH output."""


class DecryptionError(RemoteProtocolError):
    """An AEAD tag does not verify: the message was tampered with or is not for this session."""


class DuplicateMessageError(RemoteProtocolError):
    """The message was already decrypted (its key is used up): a replay."""


class BaseKeyReusedError(DuplicateMessageError):
    """A prekey message's base key is one of a session this device had and dropped: a replay.

    A :class:`DuplicateMessageError`, so a caller that acknowledges duplicates drops it too.
    """


class TooManySkippedError(RemoteProtocolError):
    """The message would skip more than MAX_SKIP message keys in one chain."""


class UnknownPreKeyError(RemoteProtocolError):
    """A prekey message names a signed or one-time prekey this device does not have (or used)."""


class NoSenderKeyError(RemoteProtocolError):
    """A group message names a group or sender-key chain this device holds no key for.

    The sender's distribution never arrived, or the chain was evicted (five are kept per sender).
    """


class SenderKeyConflictError(RemoteProtocolError):
    """A sender-key distribution contradicts a chain already held under its chain id."""


class GroupTooLargeError(LocalProtocolError):
    """A group would have more members than the transport allows (1024 on the private one)."""


class OversizedGroupError(MalformedError):
    """A received group state lists more members than a group may have (1024)."""


class StaleGroupUpdateError(RemoteProtocolError):
    """A group update is not newer than the copy of the group already held."""


class NotGroupAdminError(RemoteProtocolError):
    """A group update is signed for an account that may not make that change (not an admin)."""


class NotGroupMemberError(RemoteProtocolError):
    """A group message or sender key comes from an account that is not a member of the group."""


class HardwareAESUnavailableError(E2EProtoError):
    """This machine cannot run AES-256-GCM: libsodium needs hardware AES (AES-NI, ARMv8 Crypto).

    Neither side's fault: SFrame (cipher suite 0x0005) cannot run on this CPU at all.
    """


class CounterExhaustedError(LocalProtocolError):
    """An SFrame sender used every counter value of its key; it must switch to a new key."""


class UnknownKeyIdError(RemoteProtocolError):
    """An SFrame frame names a KID the receiver holds no key for (RFC 9605: it MAY buffer it)."""


class CallTokenError(RemoteProtocolError):
    """A call join token that is malformed or whose tag does not verify (forged, other key)."""


class ExpiredCallTokenError(CallTokenError):
    """A call join token whose expiry has passed."""


class PacketAuthenticationError(RemoteProtocolError):
    """A call datagram whose packet tag does not verify under its participant's packet key."""


class MediaError(RemoteProtocolError):
    """An encrypted media stream cannot be accepted; the caller discards all of its output."""


class MediaTruncatedError(MediaError):
    """The media stream ended before its FINAL chunk (or before the announced length)."""


class MediaTrailingDataError(MediaError):
    """Ciphertext follows the FINAL chunk of a media stream."""


class MediaSizeMismatchError(MediaError):
    """The media stream is longer, or its plaintext has another size, than the message announced."""


class BlobHashMismatchError(MediaError):
    """The SHA-256 of the downloaded ciphertext is not the blob id the message announced."""



def describe(value: object) -> str:
    """A short, safe description of a peer-supplied value for an error message.

    Never ``repr`` of arbitrary data: a deeply nested value would exhaust the recursion limit,
    and error messages must not echo payload bytes.
    """
    if value is None or type(value) in (bool, int):
        return str(value)
    if type(value) is str and len(value) <= 32 and value.isprintable():
        return repr(value)
    return f"a value of type {type(value).__name__}"

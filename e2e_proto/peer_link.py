"""The server-to-server link: mutual authentication with a shared key, then sealed frames.

The relay and the social server share a 32-byte key ``K`` (a file both are started with). Each
connects to the other; on a connection the *acceptor* speaks first (DESIGN §16; PROTOCOL.md
§19.3)::

    acceptor  -> {"type": "peer_challenge", "role": A, "nonce": nA}
    connector -> {"type": "peer_hello", "role": C, "nonce": nC, "mac": hello}
    acceptor  -> {"type": "peer_welcome", "mac": welcome}

    transcript = msgpack([C, A, nA, nC])
    hello      = HMAC-SHA256(K, b"e2e-proto/peer-hello/v1"   || transcript)
    welcome    = HMAC-SHA256(K, b"e2e-proto/peer-welcome/v1" || transcript)
    keys       = HKDF-SHA256(salt = nA || nC, ikm = K,
                             info = b"e2e-proto/peer-session/v1" || transcript, length = 64)

The roles are the transports the two servers serve (``private``, ``social``); each side refuses
a peer claiming its own role (a reflected handshake), and each checks the other's MAC, so both
know the other holds ``K`` and both nonces are fresh. Afterwards every frame is sealed:
XChaCha20-Poly1305 under the direction's key (the first 32 bytes of ``keys`` from connector to
acceptor, the last 32 back), the nonce the frame's number in that direction as 24 big-endian
bytes (0, 1, 2, ...), no associated data. A frame that does not open, or arrives out of order or
twice, ends the connection: nothing on it can be injected, replayed or reordered.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import msgpack

from .address import TRANSPORTS
from .constants import (
    MAX_PEER_FRAMES,
    NONCE_SIZE,
    PEER_HELLO_PREFIX,
    PEER_KEY_SIZE,
    PEER_NONCE_SIZE,
    PEER_SESSION_INFO,
    PEER_WELCOME_PREFIX,
    TAG_SIZE,
)
from .errors import InvalidSignatureError, LocalProtocolError, MalformedError
from .primitives import aead_open, aead_seal, hkdf_sha256, hmac_sha256


def _check(key: bytes, connector: str, acceptor: str, acceptor_nonce: object,
           connector_nonce: object) -> None:
    if type(key) is not bytes or len(key) != PEER_KEY_SIZE:
        raise LocalProtocolError(f"a peer key is {PEER_KEY_SIZE} bytes")
    if connector not in TRANSPORTS or acceptor not in TRANSPORTS or connector == acceptor:
        raise MalformedError("the two peers serve the two different transports")
    for nonce in (acceptor_nonce, connector_nonce):
        if type(nonce) is not bytes or len(nonce) != PEER_NONCE_SIZE:
            raise MalformedError(f"a peer nonce is {PEER_NONCE_SIZE} bytes")


def transcript(connector: str, acceptor: str, acceptor_nonce: bytes,
               connector_nonce: bytes) -> bytes:
    """``msgpack([connector_role, acceptor_role, acceptor_nonce, connector_nonce])``."""
    return msgpack.packb([connector, acceptor, acceptor_nonce, connector_nonce])


@dataclass(frozen=True, slots=True)
class Handshake:
    """One handshake's inputs: the key, both roles and both nonces (checked when made)."""

    key: bytes = field(repr=False)
    connector: str
    acceptor: str
    acceptor_nonce: bytes
    connector_nonce: bytes

    def __post_init__(self) -> None:
        _check(self.key, self.connector, self.acceptor, self.acceptor_nonce,
               self.connector_nonce)

    def transcript(self) -> bytes:
        """What both MACs and the session keys bind."""
        return transcript(self.connector, self.acceptor, self.acceptor_nonce,
                          self.connector_nonce)

    def hello(self) -> bytes:
        """The connector's MAC."""
        return hmac_sha256(self.key, PEER_HELLO_PREFIX + self.transcript())

    def welcome(self) -> bytes:
        """The acceptor's MAC."""
        return hmac_sha256(self.key, PEER_WELCOME_PREFIX + self.transcript())

    def check_hello(self, mac: object) -> None:
        """:class:`InvalidSignatureError` unless ``mac`` is :meth:`hello` (constant time)."""
        _compare(mac, self.hello(), "the peer's hello")

    def check_welcome(self, mac: object) -> None:
        """:class:`InvalidSignatureError` unless ``mac`` is :meth:`welcome`."""
        _compare(mac, self.welcome(), "the peer's welcome")

    def session_keys(self) -> tuple[bytes, bytes]:
        """(connector-to-acceptor key, acceptor-to-connector key)."""
        keys = hkdf_sha256(self.acceptor_nonce + self.connector_nonce, self.key,
                           PEER_SESSION_INFO + self.transcript(), 2 * PEER_KEY_SIZE)
        return keys[:PEER_KEY_SIZE], keys[PEER_KEY_SIZE:]

    def channel(self, connector_side: bool) -> tuple[FrameSealer, FrameOpener]:
        """This side's sealer and opener (``connector_side``: this side connected)."""
        outgoing, incoming = self.session_keys()
        if not connector_side:
            outgoing, incoming = incoming, outgoing
        return FrameSealer(outgoing), FrameOpener(incoming)


def _compare(mac: object, expected: bytes, what: str) -> None:
    if type(mac) is not bytes or not hmac.compare_digest(mac, expected):
        raise InvalidSignatureError(f"{what} does not prove the shared peer key")


def frame_nonce(number: int) -> bytes:
    """The nonce of the ``number``-th frame of one direction: 24 big-endian bytes."""
    return number.to_bytes(NONCE_SIZE, "big")


class FrameSealer:
    """Seals one direction's frames in order (frame ``n`` under nonce ``n``)."""

    __slots__ = ("_key", "_next")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._next = 0

    def seal(self, plaintext: bytes) -> bytes:
        """The next frame's ciphertext."""
        if self._next >= MAX_PEER_FRAMES:
            raise LocalProtocolError("this peer connection has sealed all the frames it may")
        sealed = aead_seal(plaintext, b"", frame_nonce(self._next), self._key)
        self._next += 1
        return sealed


class FrameOpener:
    """Opens one direction's frames, which must arrive in order, each once."""

    __slots__ = ("_key", "_next")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._next = 0

    def open(self, ciphertext: object) -> bytes:
        """The next frame's plaintext; :class:`~e2e_proto.errors.DecryptionError` (or
        :class:`MalformedError` for a non-bytes value) when it is not the next frame sealed
        under this key. A failure changes nothing (the caller ends the connection)."""
        if type(ciphertext) is not bytes or len(ciphertext) < TAG_SIZE:
            raise MalformedError("a sealed peer frame is bytes, at least its tag")
        plaintext = aead_open(ciphertext, b"", frame_nonce(self._next), self._key)
        self._next += 1
        return plaintext

"""Secrets at rest: a passphrase-derived key that seals stored private keys, sessions and
message texts.

The key is Argon2id (libsodium's ``crypto_pwhash``) over the passphrase and a 16-byte salt kept
beside the data, with the Argon2id cost (opslimit, memlimit) kept beside the salt: the same
passphrase always derives the same key. Each value is sealed with XChaCha20-Poly1305 under a
fresh 24-byte nonce and bound to its place (table, row) by the associated data. A wrong
passphrase is reported as :class:`WrongPassphraseError` before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.pwhash

from . import primitives
from .constants import KEY_SIZE, NONCE_SIZE, TAG_SIZE
from .errors import DecryptionError, LocalProtocolError
from .primitives import RandomSource, system_random

SALT_SIZE = nacl.pwhash.argon2id.SALTBYTES
INTERACTIVE = (nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
"""Argon2id cost for a client unlocking its state (about 0.1 s and 64 MiB)."""
MINIMUM = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
"""The cheapest cost libsodium allows: for tests only."""
MAXIMUM = (nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE)
"""The dearest cost accepted (about 3 s and 1 GiB): a stored cost above it is a damaged file."""
CHECK_VALUE = b"e2e-proto/state/v1"


class WrongPassphraseError(LocalProtocolError):
    """The passphrase does not open this state."""


def check_cost(cost: object) -> tuple[int, int]:
    """``cost`` if it is ``(opslimit, memlimit)`` within :data:`MINIMUM` .. :data:`MAXIMUM`.

    :class:`LocalProtocolError` otherwise: a cost read from a file is bounded before libsodium
    is asked to spend it.
    """
    if (type(cost) is not tuple or len(cost) != 2
            or not all(type(v) is int and low <= v <= high
                       for v, low, high in zip(cost, MINIMUM, MAXIMUM, strict=True))):
        raise LocalProtocolError(f"the Argon2id cost must be (opslimit, memlimit) between "
                                 f"{MINIMUM} and {MAXIMUM}")
    return cost  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class AtRestKey:
    """A sealing key derived from a passphrase; :meth:`seal` and :meth:`open` stored values."""

    key: bytes = field(repr=False)
    random: RandomSource = field(default=system_random, repr=False, compare=False)

    @classmethod
    def derive(cls, passphrase: str, salt: bytes, cost: tuple[int, int] = INTERACTIVE,
               random: RandomSource = system_random) -> AtRestKey:
        """Argon2id(passphrase, salt) with ``cost`` = (opslimit, memlimit) (:func:`check_cost`)."""
        if not passphrase:
            raise LocalProtocolError("the passphrase is empty")
        if len(salt) != SALT_SIZE:
            raise LocalProtocolError(f"the salt must be {SALT_SIZE} bytes")
        opslimit, memlimit = check_cost(cost)
        key = nacl.pwhash.argon2id.kdf(KEY_SIZE, passphrase.encode(), salt,
                                       opslimit=opslimit, memlimit=memlimit)
        return cls(key, random)

    def seal(self, value: bytes, place: bytes) -> bytes:
        """``nonce || ciphertext`` of ``value``, bound to ``place``."""
        nonce = self.random(NONCE_SIZE)
        return nonce + primitives.aead_seal(value, place, nonce, self.key)

    def open(self, sealed: bytes, place: bytes) -> bytes:
        """Inverse of :meth:`seal`; :class:`WrongPassphraseError` if it does not open."""
        if type(sealed) is not bytes or len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise WrongPassphraseError("a stored value is not sealed with this passphrase")
        try:
            return primitives.aead_open(sealed[NONCE_SIZE:], place, sealed[:NONCE_SIZE], self.key)
        except DecryptionError:
            raise WrongPassphraseError("the passphrase does not open this state") from None

    def check_value(self) -> bytes:
        """A sealed constant stored with the salt, to recognise a wrong passphrase at once."""
        return self.seal(CHECK_VALUE, b"check")

    def verify(self, check: bytes) -> None:
        """Raise :class:`WrongPassphraseError` unless ``check`` came from this key."""
        if self.open(check, b"check") != CHECK_VALUE:
            raise WrongPassphraseError("the passphrase does not open this state")

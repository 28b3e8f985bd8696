"""The call key a signalling server shares with its forwarding unit, kept in a file.

The file holds the 32-byte key as 64 hexadecimal digits (surrounding white space ignored);
:func:`write_key_file` creates one readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

from e2e_proto.constants import CALL_KEY_SIZE
from e2e_proto.primitives import RandomSource, system_random


class KeyFileError(Exception):
    """The key file cannot be read or does not hold a key."""


def read_key_file(path: str | os.PathLike[str],
                  maker: str = "'e2e-sfu keygen FILE'") -> bytes:
    """The call key in ``path``; :class:`KeyFileError` with a one-line reason otherwise.

    ``maker`` names the command that makes such a file (the peer key of :mod:`server.federation`
    is a file of the same form).
    """
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != CALL_KEY_SIZE:
        raise KeyFileError(f"the key file {path} must hold {CALL_KEY_SIZE} bytes as "
                           f"{2 * CALL_KEY_SIZE} hexadecimal digits ({maker} makes one)")
    return key


def write_key_file(path: str | os.PathLike[str], random: RandomSource = system_random) -> bytes:
    """Write a new random call key to ``path`` (mode 0600, never over an existing file)."""
    key = random(CALL_KEY_SIZE)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key.hex() + "\n")
    return key

"""Request fields the relay and the social server parse the same way (each with its own codes).

Each function raises :class:`~server.common.requests.RequestError` with the ``code`` its server's
API uses for a malformed request.
"""

from __future__ import annotations

from typing import Any

from e2e_proto.address import Address, is_valid_device_id
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey, PreKeyBundle, X25519PublicKey
from e2e_proto.wire import Envelope

from .requests import RequestError

SignedPreKeyFields = tuple[int, bytes, bytes]
"""``(spk_id, spk, signature)`` of a published signed prekey."""
SentEnvelope = tuple[Envelope, bytes]
"""A pairwise envelope a request carries: decoded, and its bytes as they came (to store)."""


def require(frame: dict[str, Any], name: str, kind: type, *, code: str) -> Any:
    """``frame[name]``, which must be exactly of type ``kind``."""
    value = frame.get(name)
    if type(value) is not kind:
        raise RequestError(code, f"field {name!r} must be {kind.__name__}")
    return value


def published_prekeys(frame: dict[str, Any], identity: Ed25519PublicKey, limit: int, *,
                      code: str) -> tuple[SignedPreKeyFields | None, list[tuple[int, bytes]]]:
    """The ``signed_prekey`` (its signature checked against ``identity``; None when absent)
    and the at most ``limit`` ``one_time_prekeys`` of a ``publish_prekeys`` request.
    """
    signed = frame.get("signed_prekey")
    spk = None
    if signed is not None:
        try:
            spk_id, spk_pub, signature = signed
            PreKeyBundle(identity, spk_id, X25519PublicKey(spk_pub), signature).verify()
        except (ValueError, TypeError, E2EProtoError):
            raise RequestError(code, "signed prekey is malformed or its signature does not "
                               "verify") from None
        spk = (spk_id, spk_pub, signature)
    one_time = frame.get("one_time_prekeys") or []
    if type(one_time) is not list or len(one_time) > limit:
        raise RequestError(code, f"one_time_prekeys must be a list of at most {limit}")
    try:
        opks = [(i, X25519PublicKey(key).raw) for i, key in one_time]
        if not all(is_valid_device_id(i) for i, _ in opks):
            raise ValueError
    except (ValueError, TypeError, E2EProtoError):
        raise RequestError(code, "one-time prekeys must be [u32 id, 32-byte key] pairs") from None
    return spk, opks


def check_size(size: int, limit: int, code: str, what: str = "an envelope") -> None:
    """Refuse ``what`` of ``size`` bytes when it is over ``limit`` (``code``, with ``limit``)."""
    if size > limit:
        raise RequestError(code, f"{what} has at most {limit} bytes (got {size})", limit=limit)


def sent_envelopes(raw: object, sender: Address, most: int, largest: int, *, code: str,
                   too_large: str) -> list[SentEnvelope]:
    """A request's ``envelopes``, each decoded with its bytes: a list of at most ``most``
    (checked before any is read), each bytes of at most ``largest`` (``too_large``, with
    ``limit``) that decodes as an envelope from ``sender``; anything else is refused with
    ``code``. What each recipient must be is the caller's check."""
    if type(raw) is not list or len(raw) > most:
        raise RequestError(code, f"envelopes must be a list of at most {most}")
    decoded = []
    for data in raw:
        if type(data) is not bytes:
            raise RequestError(code, "an envelope is bytes")
        check_size(len(data), largest, too_large)
        try:
            envelope = Envelope.decode(data)
        except E2EProtoError as exc:
            raise RequestError(code, f"envelope refused: {exc}") from None
        if envelope.sender != sender:
            raise RequestError(code, "an envelope's sender is not the sending device")
        decoded.append((envelope, data))
    return decoded

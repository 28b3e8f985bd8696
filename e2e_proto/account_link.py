"""Linking a private account to a social account, and what the link lets cross (DESIGN §16).

A **link statement** names both accounts and the keys that consent: the private account's
account identity key (AIK) and one device identity key of the social account, with a random
16-byte link id and the time it was made. Both keys sign the same body, each under its own
domain-separation prefix (so neither signature can stand for the other)::

    body = msgpack([1, private_account, private_key, social_account, social_device,
                    social_key, link_id, issued_ms])
    private_signature = Ed25519(AIK, b"e2e-proto/account-link/private/v1" || body)
    social_signature  = Ed25519(social device key, b"e2e-proto/account-link/social/v1" || body)

A **revocation** ends one link; either consenting key may sign it::

    body = msgpack([1, link_id, revoked_ms, "private" | "social"])
    signature = Ed25519(that side's key, b"e2e-proto/account-unlink/v1" || body)

A link id is used once, ever: a replayed statement or revocation names a link that is no longer
the live one and is refused.

While a link lives, the private side shares with the social server exactly one record type,
:class:`SharedRecord`, whose fields *are* the allow-list: account info (the private account's
name, when it was linked), the profile (display name, about), the live status updates, and the
device details (how many, their names, when each was last seen). Messages, contacts, keys,
group membership and media have no field to travel in. :meth:`SharedRecord.encode` and
:meth:`SharedRecord.decode` are the only codec of the sharing path; the decoder refuses
anything but the exact shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .address import is_valid_account, is_valid_device_id
from .constants import (
    ACCOUNT_LINK_PRIVATE_PREFIX,
    ACCOUNT_LINK_SOCIAL_PREFIX,
    ACCOUNT_LINK_VERSION,
    ACCOUNT_UNLINK_PREFIX,
    LINK_ID_SIZE,
    LINK_STATEMENT_MAX_AGE_MS,
    MAX_DEVICES,
    MAX_SHARED_DEVICE_NAME_LENGTH,
    MAX_STATUS_TEXT_LENGTH,
    MAX_STATUSES,
)
from .errors import E2EProtoError, LocalProtocolError, MalformedError, RemoteProtocolError
from .keys import Ed25519PublicKey, IdentityKeyPair
from .profiles import Profile, check_text

PRIVATE_SIDE = "private"
SOCIAL_SIDE = "social"
_U63 = 2**63
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class StaleLinkStatementError(RemoteProtocolError):
    """A link statement made too long ago (or too far in the future) to be accepted now."""


class LinkMismatchError(RemoteProtocolError):
    """A revocation names another link than the one it is checked against (a replay)."""


def _ms(value: object, what: str, error: type[Exception]) -> int:
    if type(value) is not int or not 0 <= value < _U63:
        raise error(f"{what} must be milliseconds since the epoch (a 63-bit integer)")
    return value


def _unpack_list(data: object, what: str) -> list[Any]:
    if type(data) is not bytes:
        raise MalformedError(f"{what} must be bytes")
    try:
        fields = msgpack.unpackb(data)
    except _UNPACK_ERRORS:
        raise MalformedError(f"{what} is not valid msgpack") from None
    if type(fields) is not list or not fields or fields[0] != ACCOUNT_LINK_VERSION \
            or type(fields[0]) is not int:
        raise MalformedError(f"{what} is not a version {ACCOUNT_LINK_VERSION} msgpack array")
    return fields


# -- the link statement -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkStatement:
    """Who links to whom: both accounts, the keys that consent, a link id and a time."""

    private_account: str
    private_key: Ed25519PublicKey
    social_account: str
    social_device: int
    social_key: Ed25519PublicKey
    link_id: bytes
    issued_ms: int

    def __post_init__(self) -> None:
        if not (is_valid_account(self.private_account) and is_valid_account(self.social_account)
                and is_valid_device_id(self.social_device)):
            raise LocalProtocolError("a link statement names two valid accounts and a device")
        if type(self.link_id) is not bytes or len(self.link_id) != LINK_ID_SIZE:
            raise LocalProtocolError(f"a link id is {LINK_ID_SIZE} bytes")
        if self.private_key == self.social_key:
            raise LocalProtocolError("the two consenting keys must differ")
        _ms(self.issued_ms, "issued_ms", LocalProtocolError)

    def body(self) -> bytes:
        """``msgpack([1, private_account, private_key, social_account, social_device,
        social_key, link_id, issued_ms])``."""
        return msgpack.packb([ACCOUNT_LINK_VERSION, self.private_account, self.private_key.raw,
                              self.social_account, self.social_device, self.social_key.raw,
                              self.link_id, self.issued_ms])

    def sign(self, private_identity: IdentityKeyPair,
             social_identity: IdentityKeyPair) -> SignedLinkStatement:
        """Both signatures (the keys must be the ones the statement names)."""
        if (private_identity.public_key != self.private_key
                or social_identity.public_key != self.social_key):
            raise LocalProtocolError("a link statement is signed by the keys it names")
        body = self.body()
        return SignedLinkStatement(self, body,
                                   private_identity.sign(ACCOUNT_LINK_PRIVATE_PREFIX + body),
                                   social_identity.sign(ACCOUNT_LINK_SOCIAL_PREFIX + body))

    @classmethod
    def decode(cls, body: object) -> LinkStatement:
        """Parse a statement body strictly; :class:`MalformedError` otherwise."""
        fields = _unpack_list(body, "a link statement")
        if len(fields) != 8:
            raise MalformedError("a link statement has 8 fields")
        try:
            return cls(fields[1], Ed25519PublicKey(fields[2]), fields[3], fields[4],
                       Ed25519PublicKey(fields[5]), fields[6], fields[7])
        except E2EProtoError as exc:
            raise MalformedError(f"a link statement is invalid: {exc}") from None


@dataclass(frozen=True, slots=True)
class SignedLinkStatement:
    """A link statement, its body bytes and both consenting signatures."""

    statement: LinkStatement
    body: bytes
    private_signature: bytes
    social_signature: bytes

    @classmethod
    def verify(cls, body: object, private_signature: object,
               social_signature: object) -> SignedLinkStatement:
        """Parse ``body`` and check both signatures against the keys it names.

        :class:`MalformedError` or :class:`~e2e_proto.errors.InvalidSignatureError`. Whether
        those keys are the accounts' is each server's check (the relay: the AIK it holds for
        the private account; the social server: the key its device published).
        """
        statement = LinkStatement.decode(body)
        assert type(body) is bytes
        statement.private_key.verify(ACCOUNT_LINK_PRIVATE_PREFIX + body,
                                     private_signature)  # type: ignore[arg-type]
        statement.social_key.verify(ACCOUNT_LINK_SOCIAL_PREFIX + body,
                                    social_signature)  # type: ignore[arg-type]
        return cls(statement, body, private_signature, social_signature)  # type: ignore[arg-type]

    def check_fresh(self, now_ms: int) -> None:
        """Refuse a statement issued more than :data:`LINK_STATEMENT_MAX_AGE_MS` from
        ``now_ms`` (either way): :class:`StaleLinkStatementError`."""
        if abs(now_ms - self.statement.issued_ms) > LINK_STATEMENT_MAX_AGE_MS:
            raise StaleLinkStatementError("the link statement was not made just now; make a "
                                          "new one")


# -- revocations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRevocation:
    """The end of one link, said by one of its two sides (``private`` or ``social``)."""

    link_id: bytes
    revoked_ms: int
    side: str

    def __post_init__(self) -> None:
        if type(self.link_id) is not bytes or len(self.link_id) != LINK_ID_SIZE:
            raise LocalProtocolError(f"a link id is {LINK_ID_SIZE} bytes")
        _ms(self.revoked_ms, "revoked_ms", LocalProtocolError)
        if self.side not in (PRIVATE_SIDE, SOCIAL_SIDE):
            raise LocalProtocolError("a revocation comes from the private or the social side")

    def body(self) -> bytes:
        """``msgpack([1, link_id, revoked_ms, side])``."""
        return msgpack.packb([ACCOUNT_LINK_VERSION, self.link_id, self.revoked_ms, self.side])

    def signed_bytes(self) -> bytes:
        """The bytes the side's key signs."""
        return ACCOUNT_UNLINK_PREFIX + self.body()

    def sign(self, identity: IdentityKeyPair) -> bytes:
        """The side's signature."""
        return identity.sign(self.signed_bytes())

    @classmethod
    def verify(cls, link: LinkStatement, body: object, signature: object) -> LinkRevocation:
        """Parse a revocation of ``link`` and check it is signed by the key of the side it
        names; :class:`MalformedError`, :class:`LinkMismatchError` (another link id: a
        replay) or :class:`~e2e_proto.errors.InvalidSignatureError`."""
        fields = _unpack_list(body, "a revocation")
        if len(fields) != 4:
            raise MalformedError("a revocation has 4 fields")
        try:
            revocation = cls(fields[1], fields[2], fields[3])
        except LocalProtocolError as exc:
            raise MalformedError(f"a revocation is invalid: {exc}") from None
        if revocation.link_id != link.link_id:
            raise LinkMismatchError("the revocation names another link (replayed?)")
        key = link.private_key if revocation.side == PRIVATE_SIDE else link.social_key
        key.verify(ACCOUNT_UNLINK_PREFIX + body, signature)  # type: ignore[arg-type, operator]
        return revocation


# -- the shared record: the allow-list --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedAccount:
    """Account info: the private account's name and when the link was made (ms)."""

    private_account: str
    linked_ms: int

    def __post_init__(self) -> None:
        if not is_valid_account(self.private_account):
            raise LocalProtocolError("a shared account is a valid account name")
        _ms(self.linked_ms, "linked_ms", LocalProtocolError)


@dataclass(frozen=True, slots=True)
class SharedProfile:
    """The profile: display name and about text (no avatar: media never crosses)."""

    display_name: str
    about: str

    def __post_init__(self) -> None:
        Profile(self.display_name, self.about)  # the profile's own checks


@dataclass(frozen=True, slots=True)
class SharedStatus:
    """One live status update: its text and when it was posted (ms)."""

    text: str
    posted_ms: int

    def __post_init__(self) -> None:
        check_text(self.text, MAX_STATUS_TEXT_LENGTH, "a status update")
        _ms(self.posted_ms, "posted_ms", LocalProtocolError)


@dataclass(frozen=True, slots=True)
class SharedDevice:
    """Device details: a device's name and when it was last seen (ms; None: never)."""

    name: str
    last_seen_ms: int | None

    def __post_init__(self) -> None:
        check_text(self.name, MAX_SHARED_DEVICE_NAME_LENGTH, "a device name", True)
        if self.last_seen_ms is not None:
            _ms(self.last_seen_ms, "last_seen_ms", LocalProtocolError)


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """Everything a linked private account shares with the social server, and nothing else.

    ``msgpack([1, [private_account, linked_ms], [display_name, about],
    [[text, posted_ms], ...], [[name, last_seen_ms or nil], ...]])``: at most
    :data:`~e2e_proto.constants.MAX_STATUSES` statuses and
    :data:`~e2e_proto.constants.MAX_DEVICES` devices (their count is the device count).
    """

    account: SharedAccount
    profile: SharedProfile
    statuses: tuple[SharedStatus, ...]
    devices: tuple[SharedDevice, ...]

    def __post_init__(self) -> None:
        if (type(self.account) is not SharedAccount or type(self.profile) is not SharedProfile
                or type(self.statuses) is not tuple or type(self.devices) is not tuple
                or not all(type(s) is SharedStatus for s in self.statuses)
                or not all(type(d) is SharedDevice for d in self.devices)):
            raise LocalProtocolError("a shared record is made of the allow-listed types only")
        if len(self.statuses) > MAX_STATUSES or len(self.devices) > MAX_DEVICES:
            raise LocalProtocolError(f"a shared record has at most {MAX_STATUSES} status "
                                     f"updates and {MAX_DEVICES} devices")

    def encode(self) -> bytes:
        """The record's bytes: the sharing path's only encoding."""
        return msgpack.packb([
            ACCOUNT_LINK_VERSION, [self.account.private_account, self.account.linked_ms],
            [self.profile.display_name, self.profile.about],
            [[s.text, s.posted_ms] for s in self.statuses],
            [[d.name, d.last_seen_ms] for d in self.devices]])

    @classmethod
    def decode(cls, data: object) -> SharedRecord:
        """Parse a record strictly (exactly the shape of :meth:`encode`, bounded);
        :class:`MalformedError` otherwise."""
        fields = _unpack_list(data, "a shared record")
        try:
            _, account, profile, statuses, devices = fields
            if (type(statuses) is not list or len(statuses) > MAX_STATUSES
                    or type(devices) is not list or len(devices) > MAX_DEVICES):
                raise ValueError
            account_name, linked_ms = account
            display_name, about = profile
            return cls(SharedAccount(account_name, linked_ms), SharedProfile(display_name, about),
                       tuple(SharedStatus(text, posted) for text, posted in statuses),
                       tuple(SharedDevice(name, seen) for name, seen in devices))
        except (ValueError, TypeError, LocalProtocolError):
            raise MalformedError("a shared record does not have the allow-listed shape") from None

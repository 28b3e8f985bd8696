"""Profiles and status updates: what a user says about themselves (DESIGN §16).

A **profile** is a display name, an "about" text and optionally an avatar (a file, as a
:class:`~e2e_proto.media.MediaPayload`), at a version that grows with every change: a receiver
keeps the newest version and ignores older ones. A **status update** is a short text shown for
:data:`~e2e_proto.constants.STATUS_TTL_MS` (24 hours) after it was posted.

On the private transport both travel end to end encrypted, as payloads of kind ``profile`` and
``status`` over the pairwise sessions (docs/PROTOCOL.md §19.1); on the social transport the
server keeps them (the same limits apply). Texts are checked when a value is made: an invalid
one raises :class:`~e2e_proto.errors.LocalProtocolError` when made locally, and
:meth:`ProfileUpdate.from_payload` / :meth:`StatusUpdate.from_payload` turn it into
:class:`~e2e_proto.errors.MalformedError` for what a peer sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import (
    MAX_PROFILE_ABOUT_LENGTH,
    MAX_PROFILE_NAME_LENGTH,
    MAX_PROFILE_VERSION,
    MAX_STATUS_TEXT_LENGTH,
    STATUS_TTL_MS,
)
from .errors import E2EProtoError, LocalProtocolError, MalformedError
from .media import MediaPayload
from .payload import PROFILE_KIND, STATUS_KIND, Payload
from .primitives import RandomSource, system_random


def check_text(value: object, limit: int, what: str, allow_empty: bool = False) -> str:
    """``value`` if it is a string of at most ``limit`` characters, printable apart from line
    breaks (and not empty unless ``allow_empty``); :class:`LocalProtocolError` naming ``what``
    otherwise."""
    if type(value) is not str or len(value) > limit or (not value and not allow_empty):
        size = "0" if allow_empty else "1"
        raise LocalProtocolError(f"{what} must be a string of {size} to {limit} characters")
    if not value.replace("\n", "").isprintable():
        raise LocalProtocolError(f"{what} may not contain control characters")
    return value


@dataclass(frozen=True, slots=True)
class Profile:
    """A display name and an "about" text (either may be empty)."""

    name: str = ""
    about: str = ""

    def __post_init__(self) -> None:
        check_text(self.name, MAX_PROFILE_NAME_LENGTH, "a display name", allow_empty=True)
        if "\n" in self.name:
            raise LocalProtocolError("a display name is one line")
        check_text(self.about, MAX_PROFILE_ABOUT_LENGTH, "an about text", allow_empty=True)


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """A ``profile`` payload's fields: the profile, its avatar (if any) and its version."""

    profile: Profile
    version: int
    avatar: MediaPayload | None = None

    def __post_init__(self) -> None:
        if type(self.version) is not int or not 0 < self.version <= MAX_PROFILE_VERSION:
            raise LocalProtocolError("a profile version is an integer in 1 .. 2**63-1")

    def to_payload(self, ts: int, random: RandomSource = system_random) -> Payload:
        """A ``profile`` payload (fresh random id): ``name``, ``about``, ``version`` and
        ``avatar`` (the media fields, or nil)."""
        return Payload.new(PROFILE_KIND, ts, random, name=self.profile.name,
                           about=self.profile.about, version=self.version,
                           avatar=None if self.avatar is None else self.avatar.fields())

    @classmethod
    def from_payload(cls, payload: Payload) -> ProfileUpdate:
        """The fields of a decoded ``profile`` payload; :class:`MalformedError` if invalid.

        Fields this version does not know are ignored.
        """
        fields = _fields_of(payload, PROFILE_KIND)
        try:
            avatar = fields.get("avatar")
            return cls(Profile(fields["name"], fields["about"]), fields["version"],
                       None if avatar is None else MediaPayload.from_fields(avatar))
        except (KeyError, E2EProtoError) as exc:
            raise MalformedError(f"profile payload fields are invalid: {exc}") from None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A status update: its text and when it was posted (ms); it expires 24 hours later."""

    text: str
    posted_ms: int

    def __post_init__(self) -> None:
        check_text(self.text, MAX_STATUS_TEXT_LENGTH, "a status update")
        if type(self.posted_ms) is not int or not 0 <= self.posted_ms < 2**63 - STATUS_TTL_MS:
            raise LocalProtocolError("a status update's time is milliseconds since the epoch")

    @property
    def expires_ms(self) -> int:
        """When the update stops being shown (posted + 24 h)."""
        return self.posted_ms + STATUS_TTL_MS

    def live_at(self, now_ms: int) -> bool:
        """Whether the update is still shown at ``now_ms``."""
        return self.posted_ms <= now_ms + STATUS_TTL_MS and now_ms < self.expires_ms

    def to_payload(self, random: RandomSource = system_random) -> Payload:
        """A ``status`` payload (fresh random id, ``ts`` = the time posted): ``text``."""
        return Payload.new(STATUS_KIND, self.posted_ms, random, text=self.text)

    @classmethod
    def from_payload(cls, payload: Payload) -> StatusUpdate:
        """The status of a decoded ``status`` payload (posted at its ``ts``);
        :class:`MalformedError` if invalid."""
        fields = _fields_of(payload, STATUS_KIND)
        try:
            return cls(fields["text"], payload.ts)
        except (KeyError, E2EProtoError) as exc:
            raise MalformedError(f"status payload fields are invalid: {exc}") from None


def _fields_of(payload: Payload, kind: str) -> dict[str, Any]:
    if payload.kind != kind:
        raise LocalProtocolError(f"not a {kind} payload: {payload.kind!r}")
    return payload.fields

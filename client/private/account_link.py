"""Linking this private account to a social account, and what the link shares.

Linking needs both consenting keys on one machine: this account's key (on the primary device)
and the key of one logged-in device of the social account (its home's state), which sign one
link statement (:mod:`e2e_proto.account_link`). The relay and the social server each check
their half; a link id is never used twice. While the link lives, this client hands the relay
the allow-listed part of its profile (display name, about) and its live status updates after
every change (``share_update``): they are end to end encrypted everywhere else, so only this
client can, and the link is the user's consent to it. The relay adds the account's name, the
link's time and its devices' names and last sight, passes that one record to the social server,
and logs what the social server received and when (:meth:`AccountLink.sharing_log`). Unlinking
is a revocation signed by the account key: sharing stops, and the social server deletes what it
received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.account_link import (
    PRIVATE_SIDE,
    LinkRevocation,
    LinkStatement,
    SharedRecord,
)
from e2e_proto.constants import LINK_ID_SIZE
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import IdentityKeyPair

from ..core.connection import ServerError
from ..core.errors import ClientError
from .base import SessionBase


@dataclass(frozen=True, slots=True)
class SharingLogEntry:
    """One line of the relay's sharing log: when, what (``linked``, ``shared``, ``unlinked``,
    ``deleted``, ...), a summary, and the record shared (None once the link ended)."""

    at: float
    kind: str
    link_id: bytes
    summary: str
    record: SharedRecord | None


@dataclass(frozen=True, slots=True)
class SharingReport:
    """The sharing log, the live link (``(link id, social account, linked at)`` or None) and
    whether the account takes cross-transport chats."""

    entries: list[SharingLogEntry]
    linked: tuple[bytes, str, float] | None
    cross: bool


class AccountLink(SessionBase):
    """Linking, unlinking, sharing the allow-listed profile part, and the sharing log."""

    async def link_account(self, social_account: str, social_device: int,
                           social_identity: IdentityKeyPair) -> bytes:
        """Link this account (its primary) to the social account whose device
        ``social_device`` holds ``social_identity``; the link id."""
        assert self.address is not None
        aik = self._require_primary()
        try:
            statement = LinkStatement(self.address.account, aik.public_key, social_account,
                                      social_device, social_identity.public_key,
                                      self.client.random(LINK_ID_SIZE),
                                      int(self.client.clock() * 1000))
        except E2EProtoError as exc:
            raise ClientError(f"cannot link: {exc}") from None
        signed = statement.sign(aik, social_identity)
        profile, statuses = self._shareable()
        try:
            await self.connection.request(
                "link_account", statement=signed.body, private_signature=signed.private_signature,
                social_signature=signed.social_signature, profile=profile, statuses=statuses)
        except ServerError as exc:
            raise ClientError(f"the link was refused: {exc} ({exc.code})") from None
        return statement.link_id

    async def unlink_account(self) -> str:
        """End this account's link (a revocation signed by the account key); the social
        account it was linked to."""
        aik = self._require_primary()
        report = await self.sharing_log(1)
        if report.linked is None:
            raise ClientError("this account is not linked")
        revocation = LinkRevocation(report.linked[0], int(self.client.clock() * 1000),
                                    PRIVATE_SIDE)
        try:
            await self.connection.request("unlink_account", revocation=revocation.body(),
                                          signature=revocation.sign(aik))
        except ServerError as exc:
            raise ClientError(f"the relay refused to unlink: {exc} ({exc.code})") from None
        return report.linked[1]

    async def share_profile(self) -> None:
        """Hand the relay this account's display name, about and live status updates for the
        linked social account (nothing happens when the account is not linked)."""
        profile, statuses = self._shareable()
        try:
            await self.connection.request("share_update", profile=profile, statuses=statuses)
        except ServerError as exc:
            if exc.code != api.NOT_LINKED:
                self.notices.append(f"could not share the profile with the linked social "
                                    f"account: {exc}")

    async def sharing_log(self, limit: int = 100) -> SharingReport:
        """What the relay shared with the social server for this account, and when."""
        answer = await self.connection.request("sharing", limit=limit)
        entries = []
        for fields in answer.get("entries") or []:
            try:
                at, kind, link_id, summary, raw = fields
                record = None if raw is None else SharedRecord.decode(raw)
                entries.append(SharingLogEntry(float(at), str(kind)[:32], bytes(link_id),
                                               str(summary)[:500], record))
            except (ValueError, TypeError, E2EProtoError):
                raise ClientError("the relay sent a malformed sharing log") from None
        linked = answer.get("linked")
        try:
            live = None if linked is None else (bytes(linked[0]), str(linked[1]),
                                                float(linked[2]))
        except (ValueError, TypeError, IndexError):
            raise ClientError("the relay sent a malformed sharing log") from None
        if live is not None and len(live[0]) != LINK_ID_SIZE:
            raise ClientError("the relay sent a malformed link id")
        return SharingReport(entries, live, bool(answer.get("cross")))

    def _shareable(self) -> tuple[list[str], list[list[Any]]]:
        """``[display_name, about]`` and ``[[text, posted_ms], ...]`` (live, newest first)."""
        assert self.address is not None
        own = self.state.profiles.profile(self.address.account)
        profile = ["", ""] if own is None else [own.profile.name, own.profile.about]
        return profile, [[s.status.text, s.status.posted_ms]
                         for s in self.statuses(self.address.account)]

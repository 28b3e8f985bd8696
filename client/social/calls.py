"""Calls on the social transport: signalling on the social connection; end to end in a secret
conversation, server-keyed ("not end-to-end encrypted") anywhere else (docs/PROTOCOL.md §18).

In a secret conversation the media keys go over the pairwise sessions, only to the two
accounts' accepted devices (:mod:`.device_pins`), and a key is taken only from an accepted
device the server says holds that participant id. A conversation this device knows is secret
never gets a server-keyed call: such an answer is refused (and the call left). Elsewhere the
server makes and hands out the keys, and the call says it is not end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e_proto import call_api
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey
from e2e_proto.call_media import MediaProfile
from e2e_proto.capabilities import CAPABILITIES, SOCIAL
from e2e_proto.errors import E2EProtoError
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher
from e2e_proto.wire import Envelope

from ..core.calls import (
    ActiveCall,
    CallInfo,
    CallReport,
    CallRequests,
    Grant,
    check_room,
    parse_call_info,
    parse_grant,
    roster,
)
from ..core.errors import ClientError
from .base import SessionBase
from .checks import check_name
from .state import SocialEvent

CAP = CAPABILITIES[SOCIAL].group_call_participants


class Calls(SessionBase, CallRequests):
    """Starting, joining and running calls; call notices and keys from the social server."""

    call_transport = "social"
    call_server = "the social server"
    call_cap = CAP

    async def call_start(self, name: str) -> Grant:
        """Start a call in the conversation with the account or group ``name``, and join it."""
        check_name(name)
        grant = parse_grant(await self._call_request(call_api.CALL_START, conversation=name),
                            CAP)
        await self._refuse_downgrade(grant, name)
        return grant

    async def calls_ringing(self) -> list[CallInfo]:
        """The running calls this account may join, oldest first."""
        calls = (await self._call_request(call_api.CALL_LIST)).get("calls")
        if type(calls) is not list:
            raise ClientError("the social server sent a malformed call list")
        return [parse_call_info(entry, CAP) for entry in calls[:100]]

    async def ringing_notices(self) -> list[SocialEvent]:
        """A ring to show for each call this device may join and is not in (none when the
        server cannot say)."""
        try:
            return [self._ring(info) for info in await self.calls_ringing() if not info.joined]
        except ClientError:
            return []

    async def call_join(self, info: CallInfo) -> Grant:
        """Join the call ``info`` describes (refused here when it is full already)."""
        check_room(info, CAP, SOCIAL)
        grant = parse_grant(await self._call_request(call_api.CALL_JOIN, call_id=info.call_id),
                            CAP)
        if info.group is None:
            await self._refuse_downgrade(grant, info.caller.account)
        return grant

    async def _refuse_downgrade(self, grant: Grant, name: str) -> None:
        if not grant.e2e and self.state.is_secret(name):
            await self.call_leave(grant.call_id)
            raise ClientError(f"the conversation with {name} is secret, but the server offered "
                              "a call it holds the keys of: refused")

    async def call_rejoin(self, call_id: bytes) -> Grant:
        """Join again (a new token for the forwarding unit)."""
        return parse_grant(await self._call_request(call_api.CALL_JOIN, call_id=call_id), CAP)

    # -- running a call ---------------------------------------------------------------------

    async def run_call(self, grant: Grant, profile: MediaProfile, seconds: float, *,
                       peer: str | None = None, **options: Any) -> CallReport:
        """Take part in the call of ``grant`` for ``seconds`` (with the account ``peer``, for
        an end-to-end call), then leave. The session's receive loop must run meanwhile.
        ``options`` go to :class:`~client.core.calls.ActiveCall` (level, max_kbps, random,
        watch)."""
        call = await self.open_call(grant, profile, peer=peer, **options)
        return await self.call_book.run(call, seconds)

    async def open_call(self, grant: Grant, profile: MediaProfile, *, peer: str | None = None,
                        **options: Any) -> ActiveCall:
        """The call of ``grant``, as :meth:`run_call` takes part in it, opened in the call book
        (notices that came early applied) but not running: ``call_book.run`` runs it."""
        assert self.address is not None
        if grant.e2e:
            if peer is None:
                raise ClientError("an end-to-end call is one to one: name the other account")
            await self.pin_on_first_use(*sorted({self.address.account, peer}))
        call = ActiveCall(self, grant, profile, allowed=self._call_allowed(peer),
                          **{"random": self.client.random, **options})
        for frame in self.call_book.open(call):
            await self._on_call_push(frame)
        return call

    def _call_allowed(self, peer: str | None) -> Callable[[Address], bool]:
        assert self.address is not None
        me = self.address.account

        def allowed(address: Address) -> bool:
            return address.account in (me, peer) and self.accepted_key(address) is not None

        return allowed

    async def call_send_key(self, key: CallKey, targets: list[Address]) -> None:
        """Send ``key`` to ``targets`` (accepted devices in the call) over pairwise sessions."""
        assert self.address is not None
        usable = set(await self._secret_targets(sorted({t.account for t in targets})))
        chosen = [t for t in targets if t in usable]
        payload = key.to_payload(int(self.client.clock() * 1000), self.client.random).encode()
        cipher = SessionCipher(self.state.protocol, self.address, self.client.random)
        with self.state.protocol.transaction():
            envelopes = [cipher.encrypt(t, payload).encode() for t in chosen]
        if envelopes:
            await self._call_request(call_api.CALL_SIGNAL, call_id=key.call_id,
                                     envelopes=envelopes)

    # -- notices ------------------------------------------------------------------------------

    async def _on_call_push(self, frame: dict[str, Any]) -> SocialEvent | None:
        """Act on a call notice (:meth:`CallBook.on_push`); a ring to show, or None."""
        info = await self.call_book.on_push(frame, CAP, self._take_call_signal)
        return None if info is None else self._ring(info)

    def _ring(self, info: CallInfo) -> SocialEvent:
        if info.group is not None:
            where, text = str(info.group), (f"[started a call in {info.group}; join it: "
                                            f"e2e-chat --transport social call --group "
                                            f"{info.group}]")
        else:
            where, text = info.caller.account, ("[is calling you; answer: e2e-chat "
                                                "--transport social call --answer]")
        if not info.e2e:
            text = text[:-1] + " (not end-to-end encrypted)]"
        return SocialEvent(0, "call", where, info.caller.account, info.caller.device_id,
                           int(self.client.clock() * 1000), text=text, call=info)

    async def _take_call_signal(self, call: ActiveCall, frame: dict[str, Any]) -> None:
        """Open a pairwise envelope carrying a participant's call key; give it to the call."""
        assert self.address is not None
        entry = frame.get("from")
        if not isinstance(entry, list) or len(entry) != 3:
            raise ClientError("a call key without its sender")
        _, sender = next(iter(roster([entry], 1).items()))
        accepted = self.accepted_key(sender)
        try:
            envelope = Envelope.decode(frame.get("envelope"))  # type: ignore[arg-type]
            if envelope.recipient != self.address or envelope.sender != sender:
                raise ClientError("a call key addressed wrongly")
            if accepted is None or (envelope.prekey is not None
                                    and envelope.prekey.identity_key.raw != accepted):
                raise ClientError(f"{sender} is not an accepted device")
            with self.state.protocol.transaction():
                payload = Payload.decode(SessionCipher(
                    self.state.protocol, self.address, self.client.random).decrypt(envelope))
                identity = self.state.protocol.get_identity(sender)
                if identity is None or identity.raw != accepted:
                    raise ClientError(f"{sender} is not an accepted device")
            call.on_key(sender, CallKey.from_payload(payload))
        except (E2EProtoError, ClientError, ValueError, TypeError) as exc:
            call.notice(f"could not read a call key from {sender}: {exc}")

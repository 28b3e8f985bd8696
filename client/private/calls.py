"""Calls on the private transport: signalling on the relay connection, media keys over the
pairwise sessions, end to end always (docs/PROTOCOL.md §18).

This device's key goes only to devices of the accounts the call is with by this device's own
records (the callee, or the members of its copy of the group), listed in their verified device
lists, whose account key the user has not seen change. A key is taken only from the device the
relay says holds that participant id, through a pairwise session whose key is in that account's
list. Notices about calls arrive as pushes on the connection; :meth:`Calls._on_call_push` routes
them (the receive loop must run while a call does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e_proto import call_api
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey
from e2e_proto.call_media import MediaProfile
from e2e_proto.capabilities import CAPABILITIES, PRIVATE
from e2e_proto.errors import E2EProtoError
from e2e_proto.payload import Payload
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
from ..core.connection import ConnectionLost, ServerError
from ..core.errors import ClientError
from .base import SessionBase
from .group_state import group_peer
from .received import Received

CAP = CAPABILITIES[PRIVATE].group_call_participants


class Calls(SessionBase, CallRequests):
    """Starting, joining and running calls; call notices and keys from the relay."""

    call_transport = "private"
    call_server = "the relay"
    call_cap = CAP

    async def call_start(self, name: str | None = None, group: str | None = None) -> Grant:
        """Start a call with the account ``name`` or in the group ``group``, and join it."""
        if group is not None:
            fields: dict[str, Any] = {"group_id": self.find_group(group).state.group_id}
        else:
            assert name is not None
            await self.device_list(name)  # an unknown account fails here, with its reason
            fields = {"to": name}
        return await self._granted(call_api.CALL_START, **fields)

    async def _granted(self, kind: str, **fields: Any) -> Grant:
        """The relay's answer to a start or join: a grant for an end-to-end call only."""
        return parse_grant(await self._call_request(kind, **fields), CAP, end_to_end=True)

    async def calls_ringing(self) -> list[CallInfo]:
        """The running calls this account may join, oldest first."""
        answer = await self._call_request(call_api.CALL_LIST)
        calls = answer.get("calls")
        if type(calls) is not list:
            raise ClientError("the relay sent a malformed call list")
        return [parse_call_info(entry, CAP) for entry in calls[:100]]

    async def ringing_notices(self) -> list[Received]:
        """A ring to show for each call this device may join and is not in (none when the
        relay cannot say)."""
        try:
            return [self._ring(info) for info in await self.calls_ringing() if not info.joined]
        except ClientError:
            return []

    async def call_join(self, info: CallInfo) -> Grant:
        """Join the call ``info`` describes (refused here when it is full already)."""
        check_room(info, CAP, PRIVATE)
        return await self._granted(call_api.CALL_JOIN, call_id=info.call_id)

    async def call_rejoin(self, call_id: bytes) -> Grant:
        """Join again (a new token for the forwarding unit)."""
        return await self._granted(call_api.CALL_JOIN, call_id=call_id)

    # -- running a call ---------------------------------------------------------------------

    async def run_call(self, grant: Grant, profile: MediaProfile, seconds: float, *,
                       peer: str | None = None, group_id: bytes | None = None,
                       **options: Any) -> CallReport:
        """Take part in the call of ``grant`` for ``seconds``: with the account ``peer`` or in
        the group ``group_id`` (whose devices may get this device's key); then leave.

        The session's receive loop must run meanwhile (it brings the call's notices).
        ``options`` go to :class:`~client.core.calls.ActiveCall` (level, max_kbps, random,
        watch).
        """
        call = await self.open_call(grant, profile, peer=peer, group_id=group_id, **options)
        return await self.call_book.run(call, seconds)

    async def open_call(self, grant: Grant, profile: MediaProfile, *, peer: str | None = None,
                        group_id: bytes | None = None, **options: Any) -> ActiveCall:
        """The call of ``grant``, as :meth:`run_call` takes part in it, opened in the call book
        (notices that came early applied) but not running: ``call_book.run`` runs it."""
        call = ActiveCall(self, grant, profile, allowed=self._call_allowed(peer, group_id),
                          **{"random": self.client.random, **options})
        for frame in self.call_book.open(call):
            await self._on_call_push(frame)
        return call

    def _call_allowed(self, peer: str | None, group_id: bytes | None
                      ) -> Callable[[Address], bool]:
        assert self.address is not None
        me = self.address.account

        def allowed(address: Address) -> bool:
            if self.state.key_changed(address.account):
                return False
            if group_id is not None:
                held = self.groups.get(group_id)
                return held is not None and held.state.is_member(address.account)
            return address.account in (me, peer)

        return allowed

    async def call_send_key(self, key: CallKey, targets: list[Address]) -> None:
        """Send ``key`` to ``targets`` (devices in the call) over the pairwise sessions."""
        checked = []
        for target in targets:
            if target.device_id in (await self.device_list(target.account)).device_ids:
                checked.append(target)
            else:
                self.notices.append(f"{target} is not in {target.account}'s device list: it "
                                    "gets no call key")
        if not checked:
            return
        payload = key.to_payload(int(self.client.clock() * 1000), self.client.random).encode()
        try:
            await self._ensure_sessions(checked)
            cipher = self.cipher
            with self.state.transaction():
                envelopes = [cipher.encrypt(t, payload).encode() for t in checked]
            await self.connection.request(call_api.CALL_SIGNAL, call_id=key.call_id,
                                          envelopes=envelopes)
        except ServerError as exc:
            raise ClientError(f"the relay refused the call key: {exc}") from None

    # -- notices ------------------------------------------------------------------------------

    async def _on_call_push(self, frame: dict[str, Any]) -> Received | None:
        """Act on a call notice (:meth:`CallBook.on_push`); a ring to show, or None."""
        info = await self.call_book.on_push(frame, CAP, self._take_call_signal)
        return None if info is None else self._ring(info)

    def call_group_name(self, group_id: bytes) -> str:
        """How a call's group is named here: its name, or the first 8 hex digits of its id
        when this device does not hold it."""
        held = self.groups.get(group_id)
        return (None if held is None else held.state.name) or group_id.hex()[:8]

    def _ring(self, info: CallInfo) -> Received:
        group = self.call_group_name(info.group) if isinstance(info.group, bytes) else None
        where = (f"started a call in {group}; join it: e2e-chat call --group {group}"
                 if group is not None else "is calling you; answer: e2e-chat call --answer")
        peer = group_peer(info.group) if isinstance(info.group, bytes) else info.caller.account
        return Received(info.caller.account, info.caller.device_id, peer, info.call_id,
                        int(self.client.clock() * 1000), "call", f"[{where}]", group=group,
                        call=info)

    async def _take_call_signal(self, call: ActiveCall, frame: dict[str, Any]) -> None:
        """Open a pairwise envelope carrying a participant's call key; give it to the call."""
        assert self.address is not None
        entry = frame.get("from")
        if not isinstance(entry, list) or len(entry) != 3:
            raise ClientError("a call key without its sender")
        _, sender = next(iter(roster([entry], 1).items()))
        data = frame.get("envelope")
        try:
            envelope = Envelope.decode(data)  # type: ignore[arg-type]
            if envelope.recipient != self.address or envelope.sender != sender:
                raise ClientError("a call key addressed wrongly")
            if envelope.prekey is not None:
                await self._check_sender_key(sender, envelope.prekey.identity_key)
            with self.state.transaction():
                payload = Payload.decode(self.cipher.decrypt(envelope))
            call.on_key(sender, CallKey.from_payload(payload))
        except (E2EProtoError, ClientError, ValueError, TypeError, ConnectionLost) as exc:
            call.notice(f"could not read a call key from {sender}: {exc}")

"""The calls a signalling server (the relay, the social server) is running: who may join,
who is in, and the join tokens it hands out (docs/PROTOCOL.md §18.2, §18.3).

Invariants: a call has at most its transport's participant cap (the capability table) and each
(account, device) is in it at most once, as one participant id that never changes while it
stays; a participant belongs to the connection that joined, so when that connection ends the
participant leaves; a call with nobody left ends. Calls live in memory only: a restarted server
has none. Everything is bounded: calls in all, calls started per account, participants per call.

Transport-neutral: each server's request handlers check who may start or join (an account of a
one-to-one conversation, a member of a group) and push the notices; this module only keeps the
state and refuses with a typed :class:`CallRefused`, whose ``code`` both APIs use as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from e2e_proto import call_api as api
from e2e_proto.address import Address
from e2e_proto.call_keys import CallKey
from e2e_proto.call_tokens import issue_token
from e2e_proto.constants import CALL_ID_SIZE, CALL_TOKEN_TTL_MS, SFRAME_BASE_KEY_SIZE
from e2e_proto.primitives import RandomSource, system_random
from e2e_proto.sframe import ratchet_base_key, sender_key_kid, split_sender_key_kid


class CallRefused(Exception):
    """A call request that is refused; ``code`` is the error code of both servers' APIs."""

    code: str

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class UnknownCallError(CallRefused):
    """No call has this id (it ended, or never was)."""

    code = api.UNKNOWN_CALL


class CallFullError(CallRefused):
    """The call has its transport's number of participants already."""

    code = api.CALL_FULL


class NotInvitedError(CallRefused):
    """The caller may not join this call (not a party to its conversation)."""

    code = api.NOT_INVITED


class NotParticipantError(CallRefused):
    """The caller is not in this call."""

    code = api.NOT_PARTICIPANT


class TooManyCallsError(CallRefused):
    """The server runs its most calls, or the account started its most."""

    code = api.TOO_MANY_CALLS


class CallsUnavailableError(CallRefused):
    """The server has no forwarding unit configured."""

    code = api.CALLS_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class SfuGrant:
    """Where the forwarding unit is (as clients reach it) and the key shared with it."""

    host: str
    port: int
    key: bytes

    @property
    def address(self) -> str:
        """``HOST:PORT`` as a client is told it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(eq=False, slots=True)
class CallParticipant:
    """One device in a call, through the connection that joined."""

    pid: int
    address: Address
    connection: Any

    def to_wire(self) -> list[Any]:
        """``[participant id, account, device]``."""
        return [self.pid, self.address.account, self.address.device_id]


@dataclass(eq=False, slots=True)
class Call:
    """One call: who started it, who may join, who is in, and (server-keyed) the media keys."""

    call_id: bytes
    starter: Address
    invited: frozenset[str]
    conversation: Any
    """What the call is in, as the server names it (a group id, a conversation)."""
    limit: int
    e2e: bool
    started_ms: int
    participants: dict[int, CallParticipant] = field(default_factory=dict)
    next_pid: int = 1
    keys: dict[int, CallKey] = field(default_factory=dict)
    """Server-keyed calls only (not end to end): each participant's current sender key."""

    def participant_of(self, address: Address) -> CallParticipant | None:
        """The participant that is ``address``, if it is in the call."""
        return next((p for p in self.participants.values() if p.address == address), None)

    def roster(self) -> list[list[Any]]:
        """Every participant as ``[pid, account, device]``."""
        return [p.to_wire() for p in self.participants.values()]


class CallRegistry:
    """The calls of one server; ``limit`` is its transport's participant cap."""

    def __init__(self, limit: int, grant: SfuGrant | None = None,
                 clock_ms: Callable[[], int] | None = None,
                 random: RandomSource = system_random, *, max_calls: int = 10_000,
                 calls_per_account: int = 4, on_start: Callable[[Call], None] | None = None,
                 on_end: Callable[[Call], None] | None = None) -> None:
        self.limit = limit
        self.on_start = on_start
        """Told of every call that starts (before anybody is rung), if given."""
        self.on_end = on_end
        """Told of every call that ends, however it ends, if given."""
        self.grant = grant
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.random = random
        self.max_calls = max_calls
        self.calls_per_account = calls_per_account
        self._calls: dict[bytes, Call] = {}
        self._joined: dict[Any, list[tuple[Call, CallParticipant]]] = {}
        """What each connection joined, so that a closing connection costs only its own."""

    def __len__(self) -> int:
        return len(self._calls)

    def start(self, starter: Address, invited: Iterable[str], conversation: Any,
              e2e: bool = True) -> Call:
        """A new call of ``starter`` that ``invited`` accounts may join (the starter too)."""
        if self.grant is None:
            raise CallsUnavailableError("calls are not available: this server has no "
                                        "forwarding unit (start it with --sfu HOST:PORT)")
        if len(self._calls) >= self.max_calls:
            raise TooManyCallsError("the server runs as many calls as it can; try later")
        started = sum(1 for c in self._calls.values() if c.starter.account == starter.account)
        if started >= self.calls_per_account:
            raise TooManyCallsError(f"an account runs at most {self.calls_per_account} calls "
                                    "at once", limit=self.calls_per_account)
        call_id = self.random(CALL_ID_SIZE)
        call = Call(call_id, starter, frozenset(invited) | {starter.account}, conversation,
                    self.limit, e2e, self.clock_ms())
        self._calls[call_id] = call
        if self.on_start is not None:
            self.on_start(call)
        return call

    def get(self, call_id: object) -> Call:
        """The call with this id; :class:`UnknownCallError` when there is none."""
        call = self._calls.get(call_id) if type(call_id) is bytes else None
        if call is None:
            raise UnknownCallError("no such call (it ended?)")
        return call

    def calls_for(self, account: str) -> list[Call]:
        """The running calls ``account`` may join, oldest first."""
        return [c for c in self._calls.values() if account in c.invited]

    def join(self, call: Call, address: Address, connection: Any) -> tuple[CallParticipant, bool]:
        """Put ``address`` in the call through ``connection``; (participant, whether new).

        A device already in the call gets its participant back (a new token, after the
        forwarding unit restarted); through another connection, that connection takes over.
        """
        if address.account not in call.invited:
            raise NotInvitedError("you are not invited to this call")
        current = call.participant_of(address)
        if current is not None:
            self._unindex(current)
            current.connection = connection
            self._joined.setdefault(connection, []).append((call, current))
            return current, False
        if len(call.participants) >= call.limit:
            raise CallFullError(f"a call here has at most {call.limit} participants (this one "
                                "is full)", limit=call.limit)
        participant = CallParticipant(call.next_pid, address, connection)
        call.next_pid += 1
        call.participants[participant.pid] = participant
        self._joined.setdefault(connection, []).append((call, participant))
        if not call.e2e:
            self._hand_out_keys(call, participant)
        return participant, True

    def leave(self, call: Call, address: Address) -> CallParticipant:
        """Take ``address`` out of the call (ending it if nobody is left); the participant."""
        participant = call.participant_of(address)
        if participant is None:
            raise NotParticipantError("you are not in this call")
        self._remove(call, participant)
        return participant

    def end(self, call: Call) -> None:
        """End the call for everybody."""
        if self._calls.pop(call.call_id, None) is not None and self.on_end is not None:
            self.on_end(call)
        for participant in call.participants.values():
            self._unindex(participant)

    def ended(self, call: Call) -> bool:
        """Whether the call is over."""
        return call.call_id not in self._calls

    def dropped(self, connection: Any) -> list[tuple[Call, CallParticipant]]:
        """Take out every participant that joined through ``connection`` (it closed)."""
        gone = self._joined.pop(connection, [])
        for call, participant in gone:
            self._remove(call, participant)
        return gone

    def _unindex(self, participant: CallParticipant) -> None:
        joined = self._joined.get(participant.connection)
        if joined is not None:
            joined[:] = [(c, p) for c, p in joined if p is not participant]
            if not joined:
                del self._joined[participant.connection]

    def _remove(self, call: Call, participant: CallParticipant) -> None:
        self._unindex(participant)
        del call.participants[participant.pid]
        call.keys.pop(participant.pid, None)
        if not call.participants:
            self.end(call)
        elif not call.e2e:
            self._renew_keys(call)

    def token(self, call: Call, participant: CallParticipant) -> dict[str, Any]:
        """The fields of a join answer: the unit's address, a token and its packet key."""
        assert self.grant is not None
        expires = self.clock_ms() + CALL_TOKEN_TTL_MS
        token, packet_key = issue_token(self.grant.key, call.call_id, participant.pid,
                                        participant.address, expires, call.limit, self.random)
        return {"call_id": call.call_id, "participant": participant.pid,
                "sfu": self.grant.address, "token": token, "packet_key": packet_key,
                "expires": expires, "limit": call.limit, "e2e": call.e2e,
                "participants": call.roster()}

    # -- server-keyed calls (not end to end) -------------------------------------------------

    def _hand_out_keys(self, call: Call, newcomer: CallParticipant) -> None:
        """Someone joined: every sender key steps forward (RFC 9605 §5.1), so the newcomer
        gets none that opens earlier frames; the newcomer gets a fresh key."""
        for pid, key in call.keys.items():
            generation, step = split_sender_key_kid(key.kid)
            call.keys[pid] = CallKey(call.call_id, pid, sender_key_kid(generation, step + 1),
                                     ratchet_base_key(key.base_key))
        call.keys[newcomer.pid] = CallKey(call.call_id, newcomer.pid, sender_key_kid(0, 0),
                                          self.random(SFRAME_BASE_KEY_SIZE))

    def _renew_keys(self, call: Call) -> None:
        """Someone left: every sender gets a fresh key of its next generation."""
        for pid, key in call.keys.items():
            generation, _ = split_sender_key_kid(key.kid)
            call.keys[pid] = CallKey(call.call_id, pid, sender_key_kid(generation + 1, 0),
                                     self.random(SFRAME_BASE_KEY_SIZE))

    def keys_of(self, call: Call) -> list[list[Any]]:
        """Every participant's current key as ``[pid, kid, key]`` (server-keyed calls)."""
        return [key.to_wire() for key in call.keys.values()]

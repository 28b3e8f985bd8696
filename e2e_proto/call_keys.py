"""Call media keys: one participant's SFrame sender key, the others' keyrings, and the
``call_key`` payload that carries a base key to another participant (docs/PROTOCOL.md §18.5).

Invariant: a frame is encrypted under this participant's current sender key and decrypted
only with a key its sender handed out (or one ratcheted forward from it, RFC 9605 §5.1):
someone who joins gets keys ratcheted after its join, so earlier frames stay closed to it, and
after someone leaves everyone moves to a fresh base key of the next generation, which the
leaver never receives. Frames authenticate the call id (SFrame metadata), so a frame cannot be
replayed into another call.

Each receiver keyring keeps the keys of the newest generation it has seen of its sender and of
the one before (frames in flight across a change still open); a key of an older generation is
ignored, whatever order keys arrive in. A keyring therefore holds at most
``CALL_KEPT_GENERATIONS`` x 256 KIDs (256 ratchet steps per generation, RFC 9605 §5.1 with R = 8),
and a frame with an unknown KID scans at most that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import (
    CALL_ID_SIZE,
    CALL_KEPT_GENERATIONS,
    MAX_CALL_PARTICIPANT_ID,
    SFRAME_HASH_SIZE,
    SFRAME_MAX_VALUE,
    SFRAME_MIN_BASE_KEY_SIZE,
)
from .errors import LocalProtocolError, MalformedError, UnknownKeyIdError
from .payload import CALL_KEY_KIND, Payload
from .primitives import RandomSource, system_random
from .sframe import ReceiverKeyring, SenderContext, split_sender_key_kid


def _valid(call_id: object, participant: object, kid: object, base_key: object) -> bool:
    return (type(call_id) is bytes and len(call_id) == CALL_ID_SIZE
            and type(participant) is int and 1 <= participant <= MAX_CALL_PARTICIPANT_ID
            and type(kid) is int and 0 <= kid <= SFRAME_MAX_VALUE
            and type(base_key) is bytes
            and SFRAME_MIN_BASE_KEY_SIZE <= len(base_key) <= SFRAME_HASH_SIZE)


@dataclass(frozen=True, slots=True)
class CallKey:
    """A participant's SFrame base key and its KID, for one call."""

    call_id: bytes
    participant: int
    kid: int
    base_key: bytes

    def __post_init__(self) -> None:
        if not _valid(self.call_id, self.participant, self.kid, self.base_key):
            raise LocalProtocolError("a call key needs a 16-byte call id, a u32 participant, "
                                     "a u64 KID and a 16-64 byte base key")

    def to_payload(self, ts: int, random: RandomSource = system_random) -> Payload:
        """The ``call_key`` payload that carries this key over a pairwise session."""
        return Payload.new(CALL_KEY_KIND, ts, random, call=self.call_id,
                           participant=self.participant, kid=self.kid, key=self.base_key)

    @classmethod
    def from_payload(cls, payload: Payload) -> CallKey:
        """The key a ``call_key`` payload carries; :class:`MalformedError` when it is not one."""
        fields = payload.fields
        values = (fields.get("call"), fields.get("participant"), fields.get("kid"),
                  fields.get("key"))
        if payload.kind != CALL_KEY_KIND or not _valid(*values):
            raise MalformedError("not a well-formed call_key payload")
        return cls(*values)  # type: ignore[arg-type]

    def to_wire(self) -> list[Any]:
        """``[participant, kid, base_key]`` (a social server's key list)."""
        return [self.participant, self.kid, self.base_key]

    @classmethod
    def from_wire(cls, call_id: bytes, value: object) -> CallKey:
        """Inverse of :meth:`to_wire`; :class:`MalformedError` for a wrong shape."""
        if type(value) is not list or len(value) != 3 or not _valid(call_id, *value):
            raise MalformedError("a call key is [participant, kid, key]")
        return cls(call_id, *value)


class CallKeys:
    """One participant's media keys in one call: its sender key and the others' keyrings."""

    __slots__ = ("call_id", "participant", "_newest", "_receivers", "_sender")

    def __init__(self, call_id: bytes, participant: int, sender: SenderContext) -> None:
        self.call_id = call_id
        self.participant = participant
        self._sender = sender
        self._receivers: dict[int, ReceiverKeyring] = {}
        self._newest: dict[int, int] = {}  # participant -> the newest generation held of it

    @classmethod
    def fresh(cls, call_id: bytes, participant: int,
              random: RandomSource = system_random) -> CallKeys:
        """A new random sender key at generation 0, ratchet step 0."""
        return cls(call_id, participant, SenderContext.generate(0, random))

    @property
    def own_key(self) -> CallKey:
        """This participant's current key, to hand to the others."""
        return CallKey(self.call_id, self.participant, self._sender.kid, self._sender.base_key)

    def ratchet(self) -> CallKey:
        """Someone joined: step the sender key forward (§5.1); the key to give the newcomer.

        The participants who hold the previous step follow on their own.
        """
        self._sender.ratchet()
        return self.own_key

    def renew(self, random: RandomSource = system_random) -> CallKey:
        """Someone left: a fresh random base key of the next generation; the key to give every
        remaining participant."""
        generation, _ = split_sender_key_kid(self._sender.kid)
        self._sender = SenderContext.generate(generation + 1, random)
        return self.own_key

    def set_own(self, kid: int, base_key: bytes) -> None:
        """Send under ``base_key`` from now on (a server-keyed call: the server chose it).

        The CTR goes on from where it is, never back to 0, so a server that hands out a key
        again (resent unchanged, or an earlier one) cannot make an AES-GCM nonce repeat; an
        unchanged key keeps its context (no key derivation).
        """
        sender = self._sender
        if kid != sender.kid or base_key != sender.base_key:
            self._sender = SenderContext(base_key, kid, sender.counter)

    def add(self, key: CallKey) -> None:
        """Hold another participant's key, if it is of the newest generation held of that
        participant or the one before; a key of an older generation is ignored, and a newer
        one drops the generations that fall behind."""
        if key.call_id != self.call_id or key.participant == self.participant:
            raise LocalProtocolError("a key of another call, or this participant's own")
        generation, _ = split_sender_key_kid(key.kid)
        newest = max(generation, self._newest.get(key.participant, generation))
        oldest = newest - CALL_KEPT_GENERATIONS + 1
        if generation < oldest:
            return
        keyring = self._receivers.get(key.participant)
        if keyring is None:
            keyring = self._receivers[key.participant] = ReceiverKeyring()
        keyring.add(key.kid, key.base_key)
        self._newest[key.participant] = newest
        for kid in keyring.kids:
            if split_sender_key_kid(kid)[0] < oldest:
                keyring.remove(kid)

    def forget(self, participant: int) -> None:
        """Drop a participant's keys (it left)."""
        self._receivers.pop(participant, None)
        self._newest.pop(participant, None)

    def holds(self, participant: int) -> bool:
        """Whether a key of ``participant`` is held."""
        return participant in self._receivers

    def encrypt(self, frame: bytes) -> bytes:
        """The SFrame ciphertext of ``frame`` under the current sender key."""
        return self._sender.encrypt(frame, self.call_id)

    def encrypt_parts(self, frame: bytes) -> tuple[bytes, bytes]:
        """:meth:`encrypt` as ``(SFrame header, ciphertext || tag)``, to go into a datagram
        (:func:`~e2e_proto.call_packets.media_packet`) with one copy."""
        return self._sender.encrypt_parts(frame, self.call_id)

    def decrypt(self, participant: int, sframe: bytes) -> bytes:
        """The frame inside ``participant``'s SFrame ciphertext.

        :class:`UnknownKeyIdError` when no key of that participant (or for that KID) is held,
        and the errors of :meth:`ReceiverKeyring.decrypt` otherwise.
        """
        keyring = self._receivers.get(participant)
        if keyring is None:
            raise UnknownKeyIdError(f"no key of participant {participant}")
        return keyring.decrypt(sframe, self.call_id)


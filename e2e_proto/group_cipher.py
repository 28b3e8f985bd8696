"""The group cipher: sender keys kept in a :class:`~e2e_proto.stores.SenderKeyStore` (DESIGN §13).

What :mod:`e2e_proto.session` is for pairwise sessions, :class:`GroupCipher` is for groups: it
loads the state a send, a distribution or a group message needs, works on it, and stores it only
when that succeeded, so a distribution or message that fails changes nothing in the store.
Membership, fan-out and when to rotate are the caller's (the groups layer's) business.
"""

from __future__ import annotations

from .address import Address
from .errors import LocalProtocolError, NoSenderKeyError
from .primitives import RandomSource, system_random
from .sender_keys import (
    OwnSenderKey,
    SenderKeyDistribution,
    SenderKeyMessage,
    SenderKeyRecord,
    decode_header,
)
from .stores import SenderKeyStore


class GroupCipher:
    """Encrypts this device's group messages and decrypts those of other member devices."""

    __slots__ = ("store", "random")

    def __init__(self, store: SenderKeyStore, random: RandomSource = system_random) -> None:
        self.store = store
        self.random = random

    def distribution(self, group_id: bytes) -> SenderKeyDistribution:
        """This device's current sender key in the group (made and stored on first use), to be
        sent to every member device before the next group message."""
        key = self.store.load_own_sender_key(group_id)
        if key is None:
            key = OwnSenderKey.create(group_id, self.random)
            self.store.store_own_sender_key(key)
        return key.distribution()

    def rotate(self, group_id: bytes) -> SenderKeyDistribution:
        """Replace this device's sender key in the group with a new one (after a member left or
        one of a member's devices was unlinked); send it to the remaining member devices."""
        key = self.store.load_own_sender_key(group_id)
        new = OwnSenderKey.create(group_id, self.random) if key is None else key.rotate(self.random)
        self.store.store_own_sender_key(new)
        return new.distribution()

    def encrypt(self, group_id: bytes, plaintext: bytes) -> SenderKeyMessage:
        """One group message for every member device; :class:`LocalProtocolError` before this
        device has a sender key in the group (see :meth:`distribution`)."""
        key = self.store.load_own_sender_key(group_id)
        if key is None:
            raise LocalProtocolError("no sender key in this group yet: distribute one first")
        message = key.encrypt(plaintext, self.random)
        self.store.store_own_sender_key(key)
        return message

    def process(self, sender: Address, distribution: SenderKeyDistribution) -> bool:
        """Take in ``sender``'s distribution (from a ``sender_key`` payload that arrived over the
        pairwise session with ``sender``); True when it changed the stored state."""
        record = self.store.load_sender_key(distribution.group_id, sender)
        if record is None:
            record = SenderKeyRecord(distribution.group_id)
        changed = record.process(distribution)
        if changed:
            self.store.store_sender_key(sender, record)
        return changed

    def decrypt(self, sender: Address, message: SenderKeyMessage) -> bytes:
        """Decrypt ``sender``'s group message (the group comes from its signed header).

        :class:`NoSenderKeyError` when nothing was received from ``sender`` in that group; any
        other failure as :meth:`SenderKeyRecord.decrypt` raises it, with nothing stored.
        """
        group_id, _, _ = decode_header(message.header)
        record = self.store.load_sender_key(group_id, sender)
        if record is None:
            raise NoSenderKeyError(f"no sender key from {sender} in this group")
        plaintext = record.decrypt(message)
        self.store.store_sender_key(sender, record)
        return plaintext

"""Private-transport groups on the client: membership end to end, sender keys, one ciphertext
per message.

Membership: an admin's change is a new :class:`~e2e_proto.groups.GroupState`, signed twice by
this device's DIK: the routing statement goes to the relay first (``group_put``: the relay orders
concurrent changes and refuses a stale one), then the end-to-end update goes to every member
device over the pairwise sessions (``group_deliver``; a removed member gets it by ``send``). A
received update is accepted only by :func:`~e2e_proto.groups.apply_update` against this device's
own copy, with the author device's key taken from the author account's verified device list;
the relay's copy is never read.

Sender keys: before a send, every device of every member (this account's other devices
included) must hold this device's current sender key. When a device that holds it is no longer
a member device (a member left or was removed, or unlinked a device), the key is rotated first,
so that it never learns a later message; new devices get the current chain key only. The
relay checks the version and the digest of the devices the sender covered, so nobody is sent a
message it holds no key for.

Receiving happens inside the caller's transaction (:mod:`.receiving`): the update, the sender key
or the group message's chain step commits with the stored message, before the ack.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from e2e_proto import relay_api as api
from e2e_proto.address import Address
from e2e_proto.errors import E2EProtoError, GroupTooLargeError
from e2e_proto.group_cipher import GroupCipher
from e2e_proto.groups import (
    GroupState,
    GroupUpdate,
    apply_update,
    is_valid_group_name,
    member_devices_digest,
)
from e2e_proto.media import MEDIA_KIND
from e2e_proto.payload import Payload
from e2e_proto.sender_keys import SenderKeyDistribution, decode_header
from e2e_proto.wire import GroupEnvelope, encode_group_message

from ..core.connection import ServerError
from ..core.errors import ClientError
from .base import SessionBase
from .group_state import GroupStore, StoredGroup, group_peer
from .received import Received, from_stored
from .state import StoredMessage

log = logging.getLogger("e2e.client")

MAX_DELIVER_BYTES = 768 * 1024
"""Envelope bytes per ``group_deliver`` request, well under the relay's 1 MiB frame."""


class UnknownAuthorError(Exception):
    """A group update's author device is not in the device list held for its account."""

    def __init__(self, account: str) -> None:
        super().__init__(f"the group update's author is not a listed device of {account!r}")
        self.account = account


class Groups(SessionBase):
    """Creating and changing groups, sending to them, and taking in what members send."""

    @property
    def groups(self) -> GroupStore:
        """The groups this device knows."""
        return self.state.groups

    @property
    def group_cipher(self) -> GroupCipher:
        """The sender-key cipher over this device's stored sender keys."""
        return GroupCipher(self.state.sender_keys, self.client.random)

    def find_group(self, name: str) -> StoredGroup:
        """The group this account is a member of, by name or by a hex prefix of its id."""
        assert self.address is not None
        me = self.address.account
        mine = [g for g in self.groups.all() if g.state.is_member(me)]
        found = [g for g in mine if g.state.name == name]
        if not found and len(name) >= 4:
            found = [g for g in mine if g.state.group_id.hex().startswith(name.lower())]
        if not found:
            raise ClientError(f"you are in no group named {name!r}")
        if len(found) > 1:
            ids = ", ".join(g.state.group_id.hex()[:8] for g in found)
            raise ClientError(f"several of your groups are named {name!r}: name one by its id "
                              f"({ids})")
        return found[0]

    # -- changing membership -------------------------------------------------------------------

    async def group_create(self, name: str, members: list[str]) -> GroupState:
        """Create a group of this account (its admin) and ``members``."""
        assert self.address is not None
        me = self.address.account
        if not is_valid_group_name(name):
            raise ClientError("a group name is 1 to 64 printable characters")
        if any(g.state.name == name and g.state.is_member(me) for g in self.groups.all()):
            raise ClientError(f"you are already in a group named {name!r}")
        try:
            state = GroupState.create(name, me, members, self.client.random)
        except GroupTooLargeError as exc:
            raise ClientError(str(exc)) from None
        except E2EProtoError:
            raise ClientError("members must be account names") from None
        for member in state.members:
            await self.device_list(member)  # an unknown user fails here, before anything
        return await self._change(None, state, removed=[])

    async def group_add(self, name: str, members: list[str]) -> GroupState:
        """Add ``members`` (admins only); they get the current state and, on the next send of
        each member, its current sender key: nothing sent before."""
        group = self._as_admin(name)
        try:
            new = group.with_members(members)
        except GroupTooLargeError as exc:
            raise ClientError(str(exc)) from None
        except E2EProtoError:
            raise ClientError("members must be account names") from None
        if new.members == group.members:
            raise ClientError("they are members already")
        for member in set(new.members) - set(group.members):
            await self.device_list(member)
        return await self._change(group, new, removed=[])

    async def group_remove(self, name: str, member: str) -> GroupState:
        """Remove ``member`` (admins only); every remaining sender rotates its key."""
        assert self.address is not None
        group = self._as_admin(name)
        if not group.is_member(member):
            raise ClientError(f"{member!r} is not a member of {name!r}")
        if member == self.address.account:
            raise ClientError("to remove yourself, leave the group")
        return await self._change(group, group.without_member(member), removed=[member])

    async def group_leave(self, name: str) -> GroupState:
        """Leave the group (a last admin hands admin over to the first remaining member)."""
        assert self.address is not None
        group = self.find_group(name).state
        new = await self._change(group, group.without_member(self.address.account), removed=[])
        with self.state.transaction():
            self.state.sender_keys.delete_own_sender_key(group.group_id)
            self.groups.forget_shared(group.group_id)
        return new

    async def group_rename(self, name: str, new_name: str) -> GroupState:
        """Rename the group (admins only)."""
        group = self._as_admin(name)
        if not is_valid_group_name(new_name):
            raise ClientError("a group name is 1 to 64 printable characters")
        return await self._change(group, group.renamed(new_name), removed=[])

    async def group_admin(self, name: str, member: str, admin: bool) -> GroupState:
        """Make ``member`` an admin, or no longer one (admins only)."""
        group = self._as_admin(name)
        if not group.is_member(member):
            raise ClientError(f"{member!r} is not a member of {name!r}")
        new = group.with_admin(member, admin)
        if not new.admins:
            raise ClientError("a group needs at least one admin")
        return await self._change(group, new, removed=[])

    def _as_admin(self, name: str) -> GroupState:
        assert self.address is not None
        group = self.find_group(name).state
        if not group.is_admin(self.address.account):
            raise ClientError(f"only an admin of {name!r} can do this (admins: "
                              f"{', '.join(group.admins)})")
        return group

    async def _change(self, current: GroupState | None, new: GroupState,
                      removed: list[str]) -> GroupState:
        """Publish ``new``: the routing copy to the relay, then the update to every device."""
        assert self.address is not None
        identity = self.state.protocol.identity_key_pair()
        routing = GroupUpdate.sign(new, self.address, identity, routing=True)
        update = GroupUpdate.sign(new, self.address, identity)
        try:
            await self.connection.request("group_put", routing=routing.body,
                                          signature=routing.signature)
        except ServerError as exc:
            if exc.code == api.STALE_GROUP:
                raise ClientError("the group changed meanwhile (another admin?): run 'recv' "
                                  "to take the change, then try again") from None
            raise ClientError(f"the relay refused the group change: {exc}") from None
        with self.state.transaction():
            apply_update(current, update, identity.public_key)  # the rule members apply
            self.groups.save(update, undelivered=True)
        await self._deliver_update(update, removed)
        return new

    async def _deliver_update(self, update: GroupUpdate, removed: Iterable[str],
                              only: Collection[Address] | None = None) -> None:
        """Send ``update`` to every member device (this account's others too), or to those of
        ``only`` still among them, and to ``removed`` accounts, then mark it delivered (with no
        member left, the relay deleted the group: this account's other devices get it by
        ``send``). The devices the relay left out (a full mailbox, or unlinked meanwhile) keep it
        undelivered for them alone, with a notice the first time: the next group command
        sends it to them again."""
        assert self.address is not None
        state = update.state
        payload = update.to_payload(int(self.client.clock() * 1000), self.client.random)
        devices = await self._member_devices({*state.members, self.address.account})
        wanted = None if only is None else set(only)
        targets = [Address(a, d) for a, ids in devices.items() for d in ids
                   if Address(a, d) != self.address and (wanted is None or Address(a, d) in wanted)]
        skipped: set[Address] = set()
        if state.members:
            if targets:
                skipped = await self._deliver_pairwise(state.group_id, payload.encode(), targets)
        elif targets:  # the last member left: the relay deleted the group, so no group_deliver
            await self.send_payload(self.address.account, payload)
        for account in removed:
            await self.send_payload(account, payload)
        for device in sorted(skipped - (wanted or set())):
            self.notices.append(f"{device.account}.{device.device_id} did not get the change of "
                                f"{state.name!r}: its mailbox at the relay is full (or it was "
                                "unlinked); your next group command sends it again")
        with self.state.transaction():
            if skipped:
                self.groups.set_undelivered_to(state.group_id, skipped)
            else:
                self.groups.set_delivered(state.group_id)

    async def deliver_pending_updates(self) -> None:
        """Deliver again the updates this device made that did not reach every device."""
        for group in self.groups.all():
            if group.undelivered:
                await self._deliver_update(group.update, removed=[], only=group.resend_to)

    # -- sending ---------------------------------------------------------------------------

    async def group_send_text(self, name: str, text: str) -> Received:
        """Send ``text`` to every member device: one ciphertext, fanned out by the relay."""
        assert self.address is not None
        group = self.find_group(name).state
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text)
        await self._send_group_payload(group, payload)
        message = StoredMessage(payload.id, self.address.account, self.address.device_id,
                                group_peer(group.group_id), payload.ts, "text", text)
        self.state.add_message(message, self.client.clock(), seen=True)
        return from_stored(message, outgoing=True, group=group.name)

    async def _send_group_payload(self, group: GroupState, payload: Payload,
                                  blobs: Sequence[bytes] = ()) -> None:
        """Make sure every member device holds this device's current sender key (rotating it
        first when a device that holds it left), encrypt once, and hand it to the relay.

        ``blobs``: the uploaded blobs the payload announces (the relay lets every device the
        message goes to download them). When the relay's devices differ from the lists held
        here, the differing accounts' lists are fetched and verified again and the send is
        retried (twice at most).
        """
        extra = {"blobs": list(blobs)} if blobs else {}
        plaintext = payload.encode()
        for attempt in range(3):
            devices = await self._member_devices(group.members)
            await self._share_sender_key(group, devices)
            with self.state.transaction():
                message = self.group_cipher.encrypt(group.group_id, plaintext)
            try:
                answer = await self.connection.request(
                    "group_send", group_id=group.group_id, version=group.version,
                    devices_digest=member_devices_digest(devices),
                    message=encode_group_message(message), **extra)
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt < 2:
                    await self._refresh_differing(devices, exc.details.get("devices"))
                    continue
                if exc.code == api.STALE_GROUP:
                    raise ClientError(f"the group {group.name!r} changed at the relay (version "
                                      f"{exc.details.get('version')}, yours {group.version}): "
                                      "run 'recv' to take the change, then send again") from None
                raise ClientError(f"the relay refused the group message: {exc}") from None
            targets = [Address(a, d) for a, ids in devices.items() for d in ids
                       if Address(a, d) != self.address]
            for device in sorted(skipped_devices(answer, targets)):
                self.notices.append(f"{device.account}.{device.device_id} did not get this "
                                    f"message of {group.name!r}: its mailbox at the relay is "
                                    "full")
            return

    async def _refresh_differing(self, devices: dict[str, list[int]], relay_view: object
                                 ) -> None:
        """Fetch again the device lists of members whose devices the relay sees otherwise."""
        if not isinstance(relay_view, list):
            raise ClientError("the relay answered a device mismatch without its devices")
        differing = []
        for entry in relay_view[:len(devices)]:
            if (isinstance(entry, list) and len(entry) == 2 and entry[0] in devices
                    and entry[1] != devices[entry[0]]):
                differing.append(entry[0])
        if not differing:
            raise ClientError("the relay's member list differs from this device's copy: run "
                              "'recv' to take pending group changes, then send again")
        for account in differing:
            await self.device_list(account, refresh=True)

    async def _member_devices(self, members: Iterable[str]) -> dict[str, list[int]]:
        """Every device of every member, from the verified device lists held (or fetched)."""
        return {m: (await self.device_list(m)).device_ids for m in members}

    async def _share_sender_key(self, group: GroupState, devices: dict[str, list[int]]) -> None:
        """Give this device's current sender key to every member device that lacks it.

        A device that holds the current key but is no longer a member device means a rotation
        first: the new key goes to every member device, the old holder gets nothing.
        """
        assert self.address is not None
        me = self.address
        group_id = group.group_id
        targets = {Address(a, d) for a, ids in devices.items() for d in ids} - {me}
        unchecked = {t for t in targets if self.state.key_changed(t.account)}
        for account in sorted({t.account for t in unchecked}):
            self.notices.append(f"{account!r}'s account key changed: it gets no key of "
                                f"{group.name!r} until you verify it")
        own = self.state.sender_keys.load_own_sender_key(group_id)
        shared = set() if own is None else self.groups.shared(group_id, own.chain_id)
        with self.state.transaction():
            if own is None:
                distribution = self.group_cipher.distribution(group_id)
            elif shared - targets:
                log.info("rotating the sender key of a group: %d device(s) left",
                         len(shared - targets))
                distribution = self.group_cipher.rotate(group_id)
                self.groups.forget_shared(group_id)
                shared = set()
            else:
                distribution = own.distribution()
        missing = sorted(targets - shared - unchecked)
        if missing:
            payload = distribution.to_payload(int(self.client.clock() * 1000),
                                              self.client.random)
            await self._deliver_pairwise(group_id, payload.encode(), missing,
                                         chain_id=distribution.chain_id)

    async def _deliver_pairwise(self, group_id: bytes, plaintext: bytes,
                                targets: list[Address], chain_id: int | None = None
                                ) -> set[Address]:
        """Encrypt ``plaintext`` for each target device and store it through ``group_deliver``,
        in requests of at most :data:`MAX_DELIVER_BYTES`; with ``chain_id``, record each batch
        as holding that sender key once the relay stored it. The devices the relay left out
        (a full mailbox)."""
        await self._ensure_sessions(targets)
        cipher = self.cipher
        with self.state.transaction():  # every advanced chain on disk before anything leaves
            envelopes = [cipher.encrypt(t, plaintext).encode() for t in targets]
        batch: list[bytes] = []
        batch_targets: list[Address] = []
        size = 0
        skipped: set[Address] = set()
        for target, envelope in zip(targets, envelopes, strict=True):
            if batch and size + len(envelope) > MAX_DELIVER_BYTES:
                skipped |= await self._deliver_batch(group_id, batch, batch_targets, chain_id)
                batch, batch_targets, size = [], [], 0
            batch.append(envelope)
            batch_targets.append(target)
            size += len(envelope)
        if batch:
            skipped |= await self._deliver_batch(group_id, batch, batch_targets, chain_id)
        return skipped

    async def _deliver_batch(self, group_id: bytes, envelopes: list[bytes],
                             targets: list[Address], chain_id: int | None) -> set[Address]:
        """Store one batch through ``group_deliver``; with ``chain_id``, record the devices
        the relay stored it for as holding that sender key (one it left out for a full
        mailbox gets the key again before the next message). The devices it left out."""
        try:
            answer = await self.connection.request("group_deliver", group_id=group_id,
                                                   envelopes=envelopes)
        except ServerError as exc:
            if exc.code == api.DEVICE_MISMATCH:  # a device went away: refresh, send again
                for account in sorted({a for a, _ in exc.details.get("stale", [])
                                       if isinstance(a, str)}):
                    await self.device_list(account, refresh=True)
            raise ClientError(f"the relay refused the group delivery: {exc}") from None
        skipped = skipped_devices(answer, targets)
        if skipped:
            log.info("the relay left out %d device(s) with a full mailbox", len(skipped))
        if chain_id is not None:
            with self.state.transaction():
                self.groups.add_shared(group_id, chain_id,
                                       [t for t in targets if t not in skipped])
        return skipped

    # -- receiving (inside the caller's transaction) ----------------------------------------

    def _take_group_update(self, sender: Address, payload: Payload) -> str | None:
        """Accept a ``group_update`` by this device's own rules; the line to show (None for an
        update already held).

        :class:`UnknownAuthorError` when the author device is not in the author account's list
        held here (the caller fetches it and tries again); the typed errors of
        :func:`~e2e_proto.groups.apply_update` when the update is refused.
        """
        update = GroupUpdate.from_payload(payload)
        author = update.author
        contact = self.state.contact(author.account)
        key = None if contact is None else contact[1].device_list.identity_of(author.device_id)
        if key is None:
            raise UnknownAuthorError(author.account)
        held = self.groups.get(update.state.group_id)
        current = None if held is None else held.state
        if held is not None and held.update.body == update.body:
            return None  # the same update again (a removed member's other devices get two)
        new = apply_update(current, update, key)
        self.groups.save(update)
        return describe_change(current, new, author.account)

    def _groups_for_sync(self) -> list[list[bytes]]:
        """``[[body, signature], ...]`` of every group held: a new device of this account
        checks each as any update (they are signed by their authors, not by this device)."""
        return [[g.update.body, g.update.signature] for g in self.groups.all()]

    def _take_synced_groups(self, payload: Payload) -> None:
        """Take the groups a device sync carries, each checked by :func:`apply_update`."""
        entries = payload.fields.get("groups")
        for entry in entries if isinstance(entries, list) else []:
            try:
                body, signature = entry
                update = GroupUpdate.decode(body, signature)
                contact = self.state.contact(update.author.account)
                key = None if contact is None else contact[1].device_list.identity_of(
                    update.author.device_id)
                held = self.groups.get(update.state.group_id)
                if key is None or (held is not None and held.update.body == body):
                    continue
                apply_update(None if held is None else held.state, update, key)
                self.groups.save(update)
            except (ValueError, TypeError, E2EProtoError):
                log.warning("ignored a group of a device sync that does not verify")

    def _take_sender_key(self, sender: Address, payload: Payload) -> None:
        """Keep a member device's sender key, sent to this device over its pairwise session."""
        distribution = SenderKeyDistribution.from_payload(payload)
        held = self.groups.get(distribution.group_id)
        if held is None:
            raise ClientError("a sender key for a group this device does not know")
        held.state.require_member(sender.account)
        self.group_cipher.process(sender, distribution)

    def _take_group_message(self, envelope: GroupEnvelope) -> StoredMessage:
        """Verify and decrypt a member's group message; the message to store.

        Raises the typed errors of :meth:`GroupCipher.decrypt` (no key, bad signature,
        replay, tampering) or :class:`NotGroupMemberError`; nothing is stored then.
        """
        sender = envelope.sender
        group_id, _, _ = decode_header(envelope.message.header)
        held = self.groups.get(group_id)
        if held is None:
            raise ClientError("a group message for a group this device does not know")
        held.state.require_member(sender.account)
        payload = Payload.decode(self.group_cipher.decrypt(sender, envelope.message))
        if payload.kind == MEDIA_KIND:
            text = self._keep_media(payload)  # recorded in this transaction (.media)
        else:
            text = payload.fields.get("text") if payload.kind == "text" else None
        return StoredMessage(payload.id, sender.account, sender.device_id, group_peer(group_id),
                             payload.ts, payload.kind, text if isinstance(text, str) else None)


def skipped_devices(answer: dict[str, Any], targets: Sequence[Address]) -> set[Address]:
    """The ``targets`` a ``group_send`` or ``group_deliver`` answer names in ``skipped`` (left
    out for a full mailbox). An answer whose ``skipped`` is not a list of at most one
    ``[account, device id]`` per target counts all of them as left out: what this device
    records as delivered is never more than the relay said it stored."""
    skipped = answer.get("skipped", [])
    if type(skipped) is not list or len(skipped) > len(targets) or not all(
            type(entry) is list and len(entry) == 2 and type(entry[0]) is str
            and type(entry[1]) is int for entry in skipped):
        log.warning("the relay's answer names the devices it left out wrongly")
        return set(targets)
    named = {tuple(entry) for entry in skipped}
    return {t for t in targets if (t.account, t.device_id) in named}


def describe_change(old: GroupState | None, new: GroupState, author: str) -> str:
    """What an update changed, as one line: ``[created the group with bob, carol]``."""
    if old is None and new.version > 1:
        return "[added you to the group]"
    if old is None:
        others = [m for m in new.members if m != author]
        return f"[created the group with {', '.join(others) or 'nobody else'}]"
    parts = []
    added = [m for m in new.members if m not in old.members]
    gone = [m for m in old.members if m not in new.members]
    if added:
        parts.append(f"added {', '.join(added)}")
    if gone == [author]:
        parts.append("left")
    elif gone:
        parts.append(f"removed {', '.join(gone)}")
    if new.name != old.name:
        parts.append(f"renamed the group to {new.name!r}")
    promoted = [a for a in new.admins if a not in old.admins and a in old.members]
    demoted = [a for a in old.admins if a not in new.admins and a in new.members]
    parts += [f"made {a} an admin" for a in promoted]
    parts += [f"{a} is no longer an admin" for a in demoted]
    return f"[{'; '.join(parts) or 'updated the group'}]"

"""The relay: authenticated devices, a prekey directory, device lists and mailboxes.

A thin trio layer over :mod:`e2e_proto` frames and a :class:`~server.relay_store.RelayStore`.
It routes envelopes by their addresses and never decrypts, stores or logs anything else of
them. One client's bad bytes get an error frame (and, when the stream can no longer be parsed, a
disconnect); they never stop the server.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from e2e_proto import relay_api as api
from e2e_proto.address import Address, is_valid_account, is_valid_device_id
from e2e_proto.constants import MAX_FRAME_SIZE
from e2e_proto.devices import SignedDeviceList, TooManyDevicesError, link_message
from e2e_proto.errors import E2EProtoError, describe
from e2e_proto.keys import Ed25519PublicKey, PreKeyBundle, X25519PublicKey
from e2e_proto.wire import Envelope

from .connection_base import (
    ConnectionRegistry,
    ErrorCodes,
    FrameConnection,
    RequestError,
    TokenBuckets,
)
from .fields import published_prekeys, require
from .group_commit import GroupCommit
from .relay_store import (
    Acknowledge,
    Delivery,
    DeviceGoneError,
    Enqueue,
    NameTakenError,
    NewDevice,
    Outgoing,
    QuotaExceededError,
    RelayStore,
)
from .store_base import StoreUnavailableError

log = logging.getLogger("e2e.relay")

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Limits and timings of a relay."""

    max_frame_size: int = MAX_FRAME_SIZE
    mailbox_ttl: float = 30 * DAY
    mailbox_quota: int = 10_000
    requests_per_second: float = 200.0
    request_burst: int = 400
    prekeys_low_watermark: int = 10
    max_one_time_prekeys: int = 1000
    auth_timeout: float = 30.0
    frame_timeout: float = 30.0
    account_requests_per_second: float = 400.0
    account_request_burst: int = 800
    bundles_per_minute: float = 120.0
    bundle_burst: int = 200
    connections_per_account: int = 20
    link_timeout: float = 600.0
    delivery_batch: int = 100


@dataclass(slots=True)
class _PendingLink:
    """A new device waiting, connected, for its account's primary to approve it."""

    account: str
    identity_key: bytes
    name: str
    tag: bytes
    link_signature: bytes
    signed_prekey: tuple[int, bytes, bytes]
    one_time_prekeys: list[tuple[int, bytes]]
    connection: _Connection


def _require(frame: dict[str, Any], name: str, kind: type) -> Any:
    return require(frame, name, kind, code=api.BAD_REQUEST)


def _account_field(frame: dict[str, Any], name: str = "account") -> str:
    value = frame.get(name)
    if not is_valid_account(value):
        raise RequestError(api.BAD_REQUEST, f"field {name!r} is not a valid account name")
    return value  # type: ignore[return-value]


class Relay(ConnectionRegistry[Address, "_Connection"]):
    """The relay's logic: serve connections (``handle_stream``) over one store."""

    def __init__(self, store: RelayStore, config: RelayConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store = store
        self.config = config or RelayConfig()
        self.clock = clock
        self.pending_links: dict[bytes, _PendingLink] = {}
        self.mailboxes = GroupCommit(store)
        self.account_requests = TokenBuckets(self.config.account_requests_per_second,
                                             self.config.account_request_burst)
        """Requests per account, over all its connections."""
        self.bundle_fetches = TokenBuckets(self.config.bundles_per_minute / 60,
                                           self.config.bundle_burst)
        """Prekey bundles per account (against one-time prekey draining)."""

    def account_connections(self, account: str) -> int:
        """Authenticated connections of all devices of ``account``."""
        return sum(len(c) for a, c in self._online.items() if a.account == account)

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes; never raises for the client's bytes."""
        await _Connection(self, stream, peer).serve()

    def wake(self, address: Address) -> None:
        """Tell the connections of ``address`` that new mail is waiting."""
        for connection in self._online.get(address, ()):
            connection.wakeup.set()

    def notify(self, address: Address, frame: dict[str, Any]) -> None:
        """Queue a push frame to every connection of ``address``."""
        for connection in self._online.get(address, ()):
            connection.push(frame)

    def disconnect(self, address: Address) -> None:
        """Close every connection of a device that was unlinked."""
        for connection in list(self._online.get(address, ())):
            connection.push({"type": "error", "code": api.DEVICE_UNLINKED,
                             "message": "this device was unlinked from its account"})
            connection.close_after_pushes()

    def connections_of(self, address: Address) -> int:
        """How many connections ``address`` has open."""
        return len(self._online.get(address, ()))

    async def expire_forever(self, interval: float = 3600.0) -> None:
        """Delete mail older than the TTL now and every ``interval`` seconds."""
        while True:
            removed = self.store.expire(self.clock() - self.config.mailbox_ttl)
            if removed:
                log.info("expired %d messages past the mailbox TTL", removed)
            await trio.sleep(interval)


_CODES = ErrorCodes(bad_request=api.BAD_REQUEST, unsupported=api.UNSUPPORTED,
                    frame_too_large=api.FRAME_TOO_LARGE,
                    not_authenticated=api.NOT_AUTHENTICATED, rate_limited=api.RATE_LIMITED)


class _Connection(FrameConnection):
    """One client connection: authentication, requests, deliveries and pushes."""

    codes = _CODES
    logger = log

    def __init__(self, relay: Relay, stream: trio.abc.Stream, peer: str) -> None:
        super().__init__(stream, peer, relay.config, relay.config.frame_timeout)
        self.relay = relay
        self.nonce = secrets.token_bytes(api.NONCE_SIZE)
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[dict[str, Any]](256)
        self.link_lookup: bytes | None = None
        self._link_deadline_set = False

    def push(self, frame: dict[str, Any]) -> None:
        try:
            self._outbox_send.send_nowait(frame)
        except trio.WouldBlock:  # a client too slow to read its notices loses notices only
            log.warning("dropped a notice to %s: outbox full", self.address)

    def detach(self) -> None:
        if self.address is not None:
            self.relay.detach(self.address, self)
        pending = self.relay.pending_links.get(self.link_lookup or b"")
        if pending is not None and pending.connection is self:
            del self.relay.pending_links[self.link_lookup]  # type: ignore[index]

    def close_after_pushes(self) -> None:
        """End the connection once the queued pushes are written."""
        self._outbox_send.close()

    async def _opening(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._push_loop)
        await self.send({"type": "challenge", "nonce": self.nonce})

    def _auth_deadline(self) -> float | None:
        if self.link_lookup is None or self._link_deadline_set:
            return None
        self._link_deadline_set = True  # set once: later frames do not extend the wait
        return trio.current_time() + self.relay.config.link_timeout  # waiting for approval

    async def _auth_timed_out(self) -> None:
        log.info("connection from %s: no authentication in time", self.peer)
        await self._error(None, api.NOT_AUTHENTICATED, "authentication timed out")

    def _log_kind(self, kind: object) -> str:
        return describe(kind)

    def _quote_kind(self, kind: object) -> str:
        return describe(kind)

    async def _handle(self, frame: dict[str, Any]) -> None:
        try:
            await super()._handle(frame)
        except StoreUnavailableError as exc:
            log.error("request %s from %s failed in storage: %s", describe(frame.get("type")),
                      self.address or self.peer, exc)
            await self._error(frame.get("id"), api.UNAVAILABLE, "the relay cannot store or "
                              "read data right now; nothing was stored; try again later")

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> dict[str, Any]:
        handler = self._handler_for(kind)
        if self.address is not None and not self.relay.account_requests.take(
                self.address.account):
            raise RequestError(api.RATE_LIMITED, "too many requests from this account")
        return await handler(self, frame)

    # -- authentication ----------------------------------------------------------------------

    def _check_auth_signature(self, key: Ed25519PublicKey, account: str, device_id: int,
                              signature: object) -> None:
        try:
            message = api.auth_message(self.nonce, account, device_id)
            key.verify(message, signature)  # type: ignore[arg-type]
        except E2EProtoError:
            raise RequestError(api.AUTH_FAILED,
                               "authentication signature does not verify") from None

    def _become(self, address: Address) -> None:
        if self.relay.account_connections(address.account) >= (
                self.relay.config.connections_per_account):
            raise RequestError(api.TOO_MANY_CONNECTIONS, f"{address.account} has too many "
                               "open connections; close some first")
        self.address = address
        self.relay.attach(address, self)
        try:
            self.relay.store.touch(address.account, address.device_id, self.relay.clock())
        except StoreUnavailableError:
            log.warning("could not record the last sight of %s", address)  # serve anyway
        log.info("connection from %s authenticated as %s", self.peer, address)

    async def _register(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _account_field(frame)
        try:
            account_key = Ed25519PublicKey(_require(frame, "account_key", bytes))
            signed = SignedDeviceList.verify(account_key, _require(frame, "device_list", bytes),
                                             _require(frame, "device_list_signature", bytes))
        except E2EProtoError as exc:
            raise RequestError(api.BAD_REQUEST, f"device list refused: {exc}") from None
        device_list = signed.device_list
        if device_list.account != account or device_list.device_ids != [0]:
            raise RequestError(api.BAD_REQUEST,
                               "a new account's device list must name it and hold device 0 only")
        device_key = device_list.identity_of(0)
        assert device_key is not None
        self._check_auth_signature(device_key, account, 0, frame.get("signature"))
        try:
            self.relay.store.create_account(account, account_key.raw, device_list.version,
                                            signed.body, signed.signature, {0: device_key.raw},
                                            self.relay.clock())
        except NameTakenError:
            raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken") from None
        log.info("registered account %s", account)
        self._become(Address(account, 0))
        return {"account": account, "device_id": 0}

    async def _auth(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _account_field(frame)
        device_id = frame.get("device_id")
        if not is_valid_device_id(device_id):
            raise RequestError(api.BAD_REQUEST, "field 'device_id' must be a u32")
        record = self.relay.store.account(account)
        if record is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        device_key = record.devices.get(device_id)  # type: ignore[arg-type]
        if device_key is None:
            raise RequestError(api.AUTH_FAILED, f"{account} has no device {device_id}")
        self._check_auth_signature(Ed25519PublicKey(device_key), account,
                                   device_id, frame.get("signature"))  # type: ignore[arg-type]
        self._become(Address(account, device_id))  # type: ignore[arg-type]
        return {"account": account, "device_id": device_id}

    # -- directory ---------------------------------------------------------------------------

    async def _publish_prekeys(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        account, device_id = self.address
        record = self.relay.store.account(account)
        assert record is not None
        identity = Ed25519PublicKey(record.devices[device_id])
        spk, opks = published_prekeys(frame, identity, api.MAX_ONE_TIME_PREKEYS_PER_REQUEST,
                                      code=api.BAD_REQUEST)
        held = self.relay.store.one_time_prekey_count(account, device_id)
        if held + len(opks) > self.relay.config.max_one_time_prekeys:
            raise RequestError(api.BAD_REQUEST, f"a device may hold at most "
                               f"{self.relay.config.max_one_time_prekeys} one-time prekeys "
                               f"(it holds {held})")
        count = self.relay.store.store_prekeys(account, device_id, spk, opks)
        return {"one_time_prekeys": count}

    async def _get_devices(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _account_field(frame)
        record = self.relay.store.account(account)
        if record is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        result = {"account": account, "account_key": record.account_key,
                  "device_list": record.list_body, "device_list_signature": record.list_signature}
        if self.address is not None and self.address.account == account:
            result["device_info"] = [list(i) for i in self.relay.store.device_info(account)]
        return result

    # -- linking -----------------------------------------------------------------------------

    async def _link_request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """A new device offers its key and prekeys and waits for the primary's approval."""
        if self.link_lookup is not None:
            raise RequestError(api.BAD_REQUEST, "this connection already waits for a link")
        account = _account_field(frame)
        record = self.relay.store.account(account)
        if record is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        lookup = _require(frame, "lookup", bytes)
        tag = _require(frame, "tag", bytes)
        name = _require(frame, "name", str)
        if len(lookup) != api.LOOKUP_SIZE or len(tag) != 32 or not 0 < len(name) <= 64:
            raise RequestError(api.BAD_REQUEST, "lookup, tag or name has a wrong size")
        if lookup in self.relay.pending_links:
            raise RequestError(api.BAD_REQUEST, "that link code is in use; make a new one")
        try:
            identity = Ed25519PublicKey(_require(frame, "identity_key", bytes))
            identity.verify(link_message(Ed25519PublicKey(record.account_key), account),
                            _require(frame, "link_signature", bytes))
            spk_id, spk_pub, spk_signature = frame.get("signed_prekey")  # type: ignore[misc]
            PreKeyBundle(identity, spk_id, X25519PublicKey(spk_pub), spk_signature).verify()
            opks = [(i, X25519PublicKey(key).raw) for i, key in frame.get("one_time_prekeys", [])
                    if is_valid_device_id(i)]
        except (ValueError, TypeError, E2EProtoError):
            raise RequestError(api.BAD_REQUEST, "the new device's key, link signature or "
                               "prekeys do not verify") from None
        if len(opks) > api.MAX_ONE_TIME_PREKEYS_PER_REQUEST:
            raise RequestError(api.BAD_REQUEST, "too many one-time prekeys")
        self.relay.pending_links[lookup] = _PendingLink(
            account, identity.raw, name, tag, frame["link_signature"],
            (spk_id, spk_pub, spk_signature), opks, self)
        self.link_lookup = lookup
        log.info("connection from %s waits for a link to %s", self.peer, account)
        return {"account_key": record.account_key}

    async def _get_link(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        pending = self.relay.pending_links.get(_require(frame, "lookup", bytes))
        if pending is None or pending.account != self.address.account:
            raise RequestError(api.UNKNOWN_LINK, "no device is waiting with this link code "
                               "(it may have given up; run link again)")
        return {"identity_key": pending.identity_key, "name": pending.name,
                "tag": pending.tag, "link_signature": pending.link_signature}

    async def _update_devices(self, frame: dict[str, Any]) -> dict[str, Any]:
        """A new signed device list: links at most one waiting device, may remove others."""
        assert self.address is not None
        me = self.address
        record = self.relay.store.account(me.account)
        assert record is not None
        try:
            signed = SignedDeviceList.verify(Ed25519PublicKey(record.account_key),
                                             _require(frame, "device_list", bytes),
                                             _require(frame, "device_list_signature", bytes))
        except TooManyDevicesError as exc:
            raise RequestError(api.TOO_MANY_DEVICES, str(exc)) from None
        except E2EProtoError as exc:
            raise RequestError(api.BAD_REQUEST, f"device list refused: {exc}") from None
        new = signed.device_list
        if new.account != me.account:
            raise RequestError(api.BAD_REQUEST, "the device list names another account")
        if new.version <= record.list_version:
            raise RequestError(api.STALE_DEVICE_LIST, f"device list version {new.version} is "
                               f"not newer than {record.list_version}")
        devices = {i: key.raw for i, key in new.devices}
        if devices.get(0) != record.devices.get(0):
            raise RequestError(api.BAD_REQUEST, "the primary device cannot change")
        if any(i in record.devices and key != record.devices[i] for i, key in devices.items()):
            raise RequestError(api.BAD_REQUEST, "a listed device cannot change its key")
        added_ids = [i for i in devices if i not in record.devices]
        lookup = frame.get("link")
        pending = self.relay.pending_links.get(lookup) if type(lookup) is bytes else None
        added = []
        if added_ids:
            if (len(added_ids) != 1 or pending is None or pending.account != me.account
                    or devices[added_ids[0]] != pending.identity_key):
                raise RequestError(api.UNKNOWN_LINK, "a new device must be a waiting link "
                                   "with the same key")
            if added_ids[0] <= record.max_device_id:
                raise RequestError(api.BAD_REQUEST, f"device id {added_ids[0]} was used "
                                   "before; ids are never reused")
            added.append(NewDevice(added_ids[0], pending.identity_key, pending.name,
                                   pending.signed_prekey, pending.one_time_prekeys))
        removed = self.relay.store.replace_device_list(
            me.account, new.version, signed.body, signed.signature, devices, added,
            self.relay.clock())
        log.info("device list of %s is now version %d (added %s, removed %s)", me.account,
                 new.version, added_ids, removed)
        if added and pending is not None:
            del self.relay.pending_links[lookup]  # type: ignore[arg-type]
            pending.connection.push({"type": "link_approved", "device_id": added_ids[0]})
        for device_id in removed:
            self.relay.disconnect(Address(me.account, device_id))
        return {"version": new.version, "removed": removed}

    async def _fetch_bundles(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _account_field(frame)
        record = self.relay.store.account(account)
        if record is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        wanted = frame.get("device_ids")
        if wanted is None:
            wanted = list(record.devices)
        if (type(wanted) is not list or not all(is_valid_device_id(i) for i in wanted)
                or len(set(wanted)) != len(wanted)
                or not all(i in record.devices for i in wanted)):
            raise RequestError(api.BAD_REQUEST,
                               "device_ids must list distinct devices of the account")
        assert self.address is not None
        if not self.relay.bundle_fetches.take(self.address.account, len(wanted)):
            raise RequestError(api.RATE_LIMITED, "too many prekey bundles fetched; slow down")
        bundles = []
        for device_id in wanted:
            taken = self.relay.store.take_bundle(account, device_id)
            if taken is None:
                raise RequestError(api.NO_PREKEYS, f"{account}.{device_id} has published no "
                                   "signed prekey")
            bundle, left = taken
            bundles.append(list(bundle))
            if left < self.relay.config.prekeys_low_watermark:
                self.relay.notify(Address(account, device_id),
                                  {"type": "prekeys_low", "count": left})
        return {"account": account, "bundles": bundles}

    # -- messages ----------------------------------------------------------------------------

    async def _send_messages(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        me = self.address
        to = _account_field(frame, "to")
        raw = _require(frame, "envelopes", list)
        recipient = self.relay.store.account(to)
        if recipient is None:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {to!r}")
        own = self.relay.store.account(me.account)
        assert own is not None
        expected = {Address(to, d) for d in recipient.devices}
        expected |= {Address(me.account, d) for d in own.devices}
        expected.discard(me)  # a device never sends to itself (a note to self goes to the others)
        outgoing = []
        for data in raw:
            try:
                envelope = Envelope.decode(data)  # type: ignore[arg-type]
            except E2EProtoError as exc:
                raise RequestError(api.BAD_REQUEST, f"envelope refused: {exc}") from None
            if envelope.sender != me:
                raise RequestError(api.BAD_REQUEST, "envelope sender is not this device")
            outgoing.append(Outgoing(*envelope.recipient, data))
        addressed = {Address(m.account, m.device_id) for m in outgoing}
        if len(addressed) != len(outgoing) or addressed != expected:
            missing = sorted(expected - addressed)
            stale = sorted(addressed - expected)
            raise RequestError(api.DEVICE_MISMATCH,
                               "the send must cover exactly the current devices",
                               missing=[list(a) for a in missing],
                               stale=[list(a) for a in stale])
        try:
            await self.relay.mailboxes.write(Enqueue(
                outgoing, (me.account, me.device_id), self.relay.clock(),
                self.relay.config.mailbox_quota))
        except QuotaExceededError as exc:
            raise RequestError(api.QUOTA_EXCEEDED, str(exc)) from None
        except DeviceGoneError as exc:  # unlinked while this send waited for its commit
            raise RequestError(api.DEVICE_MISMATCH,
                               "the send must cover exactly the current devices", missing=[],
                               stale=[[exc.account, exc.device_id]]) from None
        for address in addressed:
            self.relay.wake(address)
        return {"stored": len(outgoing)}

    async def _ack(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        seqs = _require(frame, "seqs", list)
        if not all(type(s) is int and 0 < s < 2**63 for s in seqs):
            raise RequestError(api.BAD_REQUEST, "seqs must be positive 63-bit integers")
        await self.relay.mailboxes.write(
            Acknowledge(self.address.account, self.address.device_id, seqs))
        return {}

    async def _ping(self, frame: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- pushes ------------------------------------------------------------------------------

    def _pending(self, after: int) -> Sequence[Delivery]:
        assert self.address is not None
        account, device_id = self.address
        return self.relay.store.pending(account, device_id, after,
                                        self.relay.config.delivery_batch)

    def _delivery_frame(self, item: Delivery) -> dict[str, Any]:
        return {"type": "deliver", "seq": item.seq, "envelope": item.envelope}

    async def _push_loop(self) -> None:
        async for frame in self._outbox_receive:
            await self.send(frame)
        if self._nursery is not None:  # closed by close_after_pushes: the device was unlinked
            self.detach()
            self.address = None
            await self.stream.aclose()
            self._nursery.cancel_scope.cancel()


_Connection.public_handlers = {
    "register": _Connection._register, "auth": _Connection._auth, "ping": _Connection._ping,
    "get_devices": _Connection._get_devices, "link_request": _Connection._link_request,
}
_Connection.authenticated_handlers = {
    "publish_prekeys": _Connection._publish_prekeys, "get_devices": _Connection._get_devices,
    "fetch_bundles": _Connection._fetch_bundles, "send": _Connection._send_messages,
    "ack": _Connection._ack, "ping": _Connection._ping, "get_link": _Connection._get_link,
    "update_devices": _Connection._update_devices,
}

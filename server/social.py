"""The social server: password accounts, any number of devices, conversations with history.

A thin trio layer over :mod:`e2e_proto` frames and a :class:`~server.social_store.SocialStore`,
built on the same connection plumbing as the relay (:mod:`server.connection_base`: dispatch
tables, :class:`RequestError` with this API's codes, a token bucket per connection) but sharing
no process, database or credentials with it. Unlike the relay it sees plaintext, except in
secret conversations, where it routes and stores e2e_proto envelopes it cannot read. It logs
requests and refusals by code, never texts, envelopes, passwords or tokens. docs/SOCIAL.md
lists every request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.pwhash
import trio

from e2e_proto import social_api as api
from e2e_proto.address import Address, is_valid_account, is_valid_device_id
from e2e_proto.capabilities import CAPABILITIES, SOCIAL
from e2e_proto.constants import MAX_FRAME_SIZE
from e2e_proto.errors import E2EProtoError
from e2e_proto.keys import Ed25519PublicKey
from e2e_proto.wire import Envelope

from .connection_base import (
    ConnectionRegistry,
    ErrorCodes,
    FrameConnection,
    RequestError,
    TokenBuckets,
)
from .fields import published_prekeys, require
from .social_store import (
    GROUP,
    ClientIdReusedError,
    Conversation,
    Event,
    KeyChangedError,
    Message,
    NameTakenError,
    NoPrekeysError,
    SocialStore,
)
from .store_base import StoreUnavailableError

log = logging.getLogger("e2e.social")

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SocialConfig:
    """Limits and timings of a social server.

    Passwords are hashed with Argon2id at ``password_opslimit``/``password_memlimit``
    (libsodium's INTERACTIVE limits by default; tests use the MIN limits to stay fast).
    """

    max_frame_size: int = MAX_FRAME_SIZE
    token_ttl: float = 30 * DAY
    requests_per_second: float = 200.0
    request_burst: int = 400
    auth_timeout: float = 30.0
    frame_timeout: float = 30.0
    delivery_batch: int = 100
    max_text_bytes: int = api.MAX_TEXT_BYTES
    password_opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    password_memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    hashing_threads: int = 2
    max_one_time_prekeys: int = 200
    bundles_per_minute: float = 120.0
    bundle_burst: int = 200


def _require(frame: dict[str, Any], name: str, kind: type) -> Any:
    return require(frame, name, kind, code=api.BAD_REQUEST)


def _name_field(frame: dict[str, Any], name: str) -> str:
    value = frame.get(name)
    if not is_valid_account(value):
        raise RequestError(api.BAD_REQUEST, f"field {name!r} is not a valid name (1-64 "
                           "lowercase letters, digits, '_', '.', '-')")
    return value  # type: ignore[return-value]


def _positive_field(frame: dict[str, Any], name: str, what: str) -> int:
    """``frame[name]`` as a positive 63-bit integer (what SQLite stores), else ``bad_request``."""
    value = frame.get(name)
    if type(value) is not int or not 0 < value < 2**63:
        raise RequestError(api.BAD_REQUEST, f"field {name!r} must be {what}")
    return value


def _message_id_field(frame: dict[str, Any], name: str = "message") -> int:
    return _positive_field(frame, name, "a message id")


def token_hash(token: bytes) -> bytes:
    """What the server keeps of a session token: its SHA-256."""
    return hashlib.sha256(token).digest()


class SocialServer(ConnectionRegistry[str, "_Connection"]):
    """The social server's logic: serve connections (``handle_stream``) over one store."""

    def __init__(self, store: SocialStore, config: SocialConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.store = store
        self.config = config or SocialConfig()
        self.clock = clock
        self.capabilities = CAPABILITIES[SOCIAL]
        self._hashing = trio.CapacityLimiter(self.config.hashing_threads)
        self._dummy_hash: bytes | None = None
        self.bundle_fetches = TokenBuckets(self.config.bundles_per_minute / 60,
                                           self.config.bundle_burst)
        """Prekey bundles per account (against one-time prekey draining)."""

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "?") -> None:
        """Serve one client connection until it closes; never raises for the client's bytes."""
        await _Connection(self, stream, peer).serve()

    def wake(self, accounts: Sequence[str]) -> None:
        """Tell every connection of these accounts that new events are waiting."""
        for account in accounts:
            for connection in self._online.get(account, ()):
                connection.wakeup.set()

    def now_ms(self) -> int:
        """The server's clock in milliseconds (message and event timestamps)."""
        return int(self.clock() * 1000)

    # -- passwords (Argon2id, in a worker thread so the event loop keeps serving) -------------

    async def hash_password(self, password: bytes) -> bytes:
        """The Argon2id hash string of ``password`` at the configured limits."""
        config = self.config
        return await trio.to_thread.run_sync(
            lambda: nacl.pwhash.argon2id.str(password, opslimit=config.password_opslimit,
                                             memlimit=config.password_memlimit),
            limiter=self._hashing)

    async def check_password(self, stored: bytes | None, password: bytes) -> bool:
        """Whether ``password`` matches ``stored``; an unknown account costs the same work."""
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash_password(secrets.token_bytes(16))
            stored = self._dummy_hash

        def verify() -> bool:
            try:
                return bool(nacl.pwhash.argon2id.verify(stored, password))
            except nacl.exceptions.InvalidkeyError:
                return False

        return await trio.to_thread.run_sync(verify, limiter=self._hashing)


_CODES = ErrorCodes(bad_request=api.BAD_REQUEST, unsupported=api.UNSUPPORTED,
                    frame_too_large=api.FRAME_TOO_LARGE,
                    not_authenticated=api.NOT_AUTHENTICATED, rate_limited=api.RATE_LIMITED)


class _Connection(FrameConnection):
    """One client connection: login, requests and event delivery."""

    codes = _CODES
    logger = log
    authenticate_first = "log in first"
    already_authenticated = "this connection is logged in already"

    def __init__(self, server: SocialServer, stream: trio.abc.Stream, peer: str) -> None:
        super().__init__(stream, peer, server.config, server.config.frame_timeout)
        self.server = server
        self.store = server.store
        self.expires = 0.0

    def detach(self) -> None:
        if self.address is not None:
            self.server.detach(self.address.account, self)

    async def _auth_timed_out(self) -> None:
        log.info("connection from %s: no login in time", self.peer)
        await self._error(None, api.NOT_AUTHENTICATED, "log in within "
                          f"{self.server.config.auth_timeout:g} seconds")

    def _log_kind(self, kind: object) -> str:
        return str(kind)[:40]

    def _quote_kind(self, kind: object) -> str:
        return repr(str(kind)[:40])

    async def _handle(self, frame: dict[str, Any]) -> None:
        try:
            await super()._handle(frame)
        except StoreUnavailableError as exc:  # disk full, read-only, ...: refuse, keep serving
            log.error("request %s from %s failed in storage: %s", self._log_kind(frame.get("type")),
                      self.address or self.peer, exc)
            await self._error(frame.get("id"), api.UNAVAILABLE, "the social server cannot store "
                              "or read data right now; nothing was stored; try again later")

    async def _dispatch(self, kind: object, frame: dict[str, Any]) -> dict[str, Any]:
        if self.address is not None and self.server.clock() >= self.expires:
            self._closing = True
            raise RequestError(api.TOKEN_EXPIRED, "the session token expired; log in again")
        return await self._handler_for(kind)(self, frame)

    # -- accounts and devices -----------------------------------------------------------------

    def _password_field(self, frame: dict[str, Any]) -> bytes:
        value = frame.get("password")
        if type(value) is str:
            value = value.encode()
        if type(value) is not bytes or len(value) > api.MAX_PASSWORD_BYTES:
            raise RequestError(api.BAD_REQUEST, "field 'password' must be a string of at most "
                               f"{api.MAX_PASSWORD_BYTES} bytes")
        return value

    def _become(self, account: str, device_id: int, expires: float) -> None:
        self.address = Address(account, device_id)
        self.expires = expires
        self.server.attach(account, self)
        log.info("connection from %s logged in as %s", self.peer, self.address)

    def _new_device(self, account: str) -> dict[str, Any]:
        token = secrets.token_bytes(api.TOKEN_SIZE)
        expires = self.server.clock() + self.server.config.token_ttl
        device_id = self.store.add_device(account, token_hash(token), expires)
        self._become(account, device_id, expires)
        return {"account": account, "device_id": device_id, "token": token,
                "expires": expires}

    async def _register(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _name_field(frame, "account")
        password = self._password_field(frame)
        if len(password.decode(errors="replace")) < api.MIN_PASSWORD_LENGTH:
            raise RequestError(api.WEAK_PASSWORD, "a password needs at least "
                               f"{api.MIN_PASSWORD_LENGTH} characters")
        if self.store.account_exists(account) or self.store.group(account) is not None:
            raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken")
        hashed = await self.server.hash_password(password)
        try:
            self.store.create_account(account, hashed, self.server.clock())
        except NameTakenError:
            raise RequestError(api.NAME_TAKEN, f"the name {account!r} is taken") from None
        log.info("registered account %s", account)
        return self._new_device(account)

    async def _login(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _name_field(frame, "account")
        password = self._password_field(frame)
        if not await self.server.check_password(self.store.password_hash(account), password):
            raise RequestError(api.AUTH_FAILED, "wrong account name or password")
        return self._new_device(account)

    async def _auth(self, frame: dict[str, Any]) -> dict[str, Any]:
        token = frame.get("token")
        if type(token) is not bytes or len(token) != api.TOKEN_SIZE:
            raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
        device = self.store.device_by_token(token_hash(token))
        if device is None:
            raise RequestError(api.BAD_TOKEN, "the session token is not valid; log in again")
        if self.server.clock() >= device.expires:
            raise RequestError(api.TOKEN_EXPIRED, "the session token expired; log in again")
        self._become(device.account, device.device_id, device.expires)
        return {"account": device.account, "device_id": device.device_id,
                "expires": device.expires}

    async def _ping(self, frame: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- key directory for secret conversations -----------------------------------------------

    async def _publish_prekeys(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        try:
            identity = Ed25519PublicKey(_require(frame, "identity_key", bytes))
        except E2EProtoError:
            raise RequestError(api.BAD_REQUEST, "identity_key must be 32 bytes") from None
        spk, opks = published_prekeys(frame, identity, self.server.config.max_one_time_prekeys,
                                      code=api.BAD_REQUEST)
        try:
            count = self.store.publish_prekeys(*self.address, identity.raw, spk, opks)
        except KeyChangedError:
            raise RequestError(api.KEY_CHANGED, "this device published another identity key "
                               "before; log in as a new device") from None
        return {"one_time_prekeys": count}

    async def _get_devices(self, frame: dict[str, Any]) -> dict[str, Any]:
        account = _name_field(frame, "account")
        if not self.store.account_exists(account):
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        return {"account": account,
                "devices": [[d.device_id, d.identity_key] for d in self.store.devices(account)]}

    async def _fetch_bundles(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        account = _name_field(frame, "account")
        if not self.store.account_exists(account):
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {account!r}")
        keyed = {d.device_id for d in self.store.devices(account) if d.identity_key is not None}
        wanted = frame.get("device_ids")
        if wanted is None:
            wanted = sorted(keyed)
        if (type(wanted) is not list or not all(is_valid_device_id(i) for i in wanted)
                or len(set(wanted)) != len(wanted) or not all(i in keyed for i in wanted)):
            raise RequestError(api.BAD_REQUEST, "device_ids must list distinct devices of the "
                               "account that published keys")
        if not self.server.bundle_fetches.take(self.address.account, len(wanted)):
            raise RequestError(api.RATE_LIMITED, "too many prekey bundles fetched; slow down")
        try:
            bundles = self.store.take_bundles(account, wanted)
        except NoPrekeysError as exc:
            raise RequestError(api.NO_PREKEYS, f"{account}.{exc.device_id} has published no "
                               "signed prekey") from None
        return {"account": account, "bundles": [list(b) for b in bundles]}

    # -- conversations ------------------------------------------------------------------------

    def _resolve(self, name: str, create: bool = False) -> Conversation:
        """The conversation ``name`` means to the caller: an account (one to one) or a group."""
        assert self.address is not None
        me = self.address.account
        if self.store.account_exists(name):
            return self.store.direct(me, name, create)
        group = self.store.group(name)
        if group is None:
            raise RequestError(api.UNKNOWN_CONVERSATION, f"no account or group named {name!r}")
        if me not in group.members:
            raise RequestError(api.NOT_MEMBER, f"you are not a member of {name!r}")
        return group

    def _conversation_field(self, frame: dict[str, Any], create: bool = False) -> Conversation:
        return self._resolve(_name_field(frame, "conversation"), create)

    def _describe(self, conversation: Conversation) -> dict[str, Any]:
        assert self.address is not None
        return {"conversation": conversation.title_for(self.address.account),
                "kind": conversation.kind, "members": list(conversation.members),
                "secret": conversation.secret}

    async def _conversation_info(self, frame: dict[str, Any]) -> dict[str, Any]:
        return self._describe(self._conversation_field(frame))

    def _check_members(self, members: object, extra: int) -> list[str]:
        if type(members) is not list or not all(is_valid_account(m) for m in members):
            raise RequestError(api.BAD_REQUEST, "field 'members' must be a list of account "
                               "names")
        limit = self.server.capabilities.max_group_members
        unique = sorted(set(members))  # type: ignore[arg-type]
        if len(unique) + extra > limit:
            raise RequestError(api.GROUP_TOO_LARGE, f"a group has at most {limit} members "
                               f"(this would make {len(unique) + extra})", limit=limit)
        unknown = [m for m in unique if not self.store.account_exists(m)]
        if unknown:
            raise RequestError(api.UNKNOWN_ACCOUNT, f"no account named {unknown[0]!r}",
                               accounts=unknown[:20])
        return unique

    async def _group_create(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        me, device_id = self.address
        name = _name_field(frame, "name")
        members = [m for m in self._check_members(frame.get("members"), 1) if m != me]
        if self.store.account_exists(name) or self.store.group(name) is not None:
            raise RequestError(api.NAME_TAKEN, f"the name {name!r} is taken")
        try:
            group = self.store.create_group(name, [me, *members], me, device_id,
                                            self.server.now_ms())
        except NameTakenError:
            raise RequestError(api.NAME_TAKEN, f"the name {name!r} is taken") from None
        self.server.wake(group.members)
        return self._describe(group)

    async def _group_add(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        group = self._conversation_field(frame)
        if group.kind != GROUP or group.id is None:
            raise RequestError(api.BAD_REQUEST, "members can only be added to a group")
        new = [m for m in self._check_members(frame.get("members"), 0)
               if m not in group.members]
        limit = self.server.capabilities.max_group_members
        if len(group.members) + len(new) > limit:
            raise RequestError(api.GROUP_TOO_LARGE, f"a group has at most {limit} members "
                               f"(this would make {len(group.members) + len(new)})",
                               limit=limit)
        group = self.store.add_members(group.id, new, *self.address, self.server.now_ms())
        self.server.wake(group.members)
        return self._describe(group)

    async def _secret(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        conversation = self._conversation_field(frame, create=True)
        if conversation.kind == GROUP:
            raise RequestError(api.UNSUPPORTED, "secret conversations are one to one; groups "
                               "are not end-to-end encrypted on the social transport")
        assert conversation.id is not None
        changed = not conversation.secret
        if changed:
            self.store.set_secret(conversation.id, *self.address, self.server.now_ms())
            self.server.wake(conversation.members)
        return {**self._describe(self.store.conversation(conversation.id) or conversation),
                "changed": changed}

    # -- messages -----------------------------------------------------------------------------

    async def _send_message(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        me = self.address
        conversation = self._conversation_field(frame, create=False)
        text = frame.get("text")
        raw = frame.get("envelopes")
        envelopes: list[tuple[str, int, bytes]] = []
        if conversation.secret:
            if text is not None or type(raw) is not list:
                raise RequestError(api.SECRET_CONVERSATION, "this conversation is end-to-end "
                                   "encrypted: send envelopes, not plaintext")
            envelopes = self._check_envelopes(conversation, raw)
        else:
            if raw is not None:
                raise RequestError(api.NOT_SECRET, "this conversation is not secret: send "
                                   "text (run 'secret' first to encrypt it)")
            if type(text) is not str or not text:
                raise RequestError(api.BAD_REQUEST, "field 'text' must be a non-empty string")
            size = len(text.encode("utf-8", errors="surrogatepass"))
            if size > self.server.config.max_text_bytes:
                raise RequestError(api.MESSAGE_TOO_LARGE, f"a message has at most "
                                   f"{self.server.config.max_text_bytes} bytes (got {size})",
                                   limit=self.server.config.max_text_bytes)
            if "\x00" in text:
                raise RequestError(api.BAD_REQUEST, "text may not contain NUL characters")
        client_id = frame.get("client_id")
        if client_id is not None and (type(client_id) is not bytes
                                      or len(client_id) != api.CLIENT_ID_SIZE):
            raise RequestError(api.BAD_REQUEST, f"client_id must be {api.CLIENT_ID_SIZE} bytes")
        if conversation.id is None:
            conversation = self._resolve(_name_field(frame, "conversation"), create=True)
        assert conversation.id is not None
        ts = self.server.now_ms()
        try:
            message_id = self.store.add_message(conversation.id, me.account, me.device_id, ts,
                                                None if conversation.secret else text,
                                                envelopes, client_id)
        except ClientIdReusedError:
            raise RequestError(api.BAD_REQUEST, "that client_id was used for a message to "
                               "another conversation") from None
        stored = self.store.message(message_id)
        if stored is not None:
            ts = stored.ts  # a resend (same client_id) answers with the first send's message
        self.server.wake(conversation.members)
        return {"message": message_id, "ts": ts,
                "conversation": conversation.title_for(me.account)}

    def _check_envelopes(self, conversation: Conversation,
                         raw: list[Any]) -> list[tuple[str, int, bytes]]:
        """Each envelope from this device, each keyed device of the members exactly once."""
        assert self.address is not None
        me = self.address
        expected = {Address(member, d.device_id) for member in conversation.members
                    for d in self.store.devices(member) if d.identity_key is not None}
        expected.discard(me)
        found: list[tuple[str, int, bytes]] = []
        for data in raw:
            if type(data) is not bytes:
                raise RequestError(api.BAD_REQUEST, "envelopes must be bytes")
            if len(data) > api.MAX_ENVELOPE_BYTES:
                raise RequestError(api.MESSAGE_TOO_LARGE, "an envelope has at most "
                                   f"{api.MAX_ENVELOPE_BYTES} bytes",
                                   limit=api.MAX_ENVELOPE_BYTES)
            try:
                envelope = Envelope.decode(data)
            except E2EProtoError as exc:
                raise RequestError(api.BAD_REQUEST, f"envelope refused: {exc}") from None
            if envelope.sender != me:
                raise RequestError(api.BAD_REQUEST, "envelope sender is not this device")
            found.append((*envelope.recipient, data))
        addressed = {Address(a, d) for a, d, _ in found}
        if len(addressed) != len(found) or addressed != expected:
            raise RequestError(api.DEVICE_MISMATCH,
                               "the send must cover exactly the members' current devices",
                               missing=[list(a) for a in sorted(expected - addressed)],
                               stale=[list(a) for a in sorted(addressed - expected)])
        return found

    def _member_message(self, frame: dict[str, Any]) -> tuple[Message, Conversation]:
        assert self.address is not None
        message = self.store.message(_message_id_field(frame))
        if message is None:
            raise RequestError(api.UNKNOWN_MESSAGE, "no such message")
        conversation = self.store.conversation(message.conversation)
        assert conversation is not None
        if self.address.account not in conversation.members:
            raise RequestError(api.NOT_MEMBER, "you are not a member of that message's "
                               "conversation")
        return message, conversation

    async def _react(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        emoji = frame.get("emoji")
        if not api.is_single_emoji(emoji):
            raise RequestError(api.INVALID_REACTION, "a reaction must be exactly one emoji")
        message, conversation = self._member_message(frame)
        if conversation.secret:
            raise RequestError(api.SECRET_CONVERSATION, "reactions in a secret conversation "
                               "would be readable by the server; they are not offered")
        changed = self.store.set_reaction(message, *self.address, emoji, self.server.now_ms())
        if changed:
            self.server.wake(conversation.members)
        return {"message": message.id, "changed": changed}

    async def _unreact(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        message, conversation = self._member_message(frame)
        changed = self.store.set_reaction(message, *self.address, None, self.server.now_ms())
        if changed:
            self.server.wake(conversation.members)
        return {"message": message.id, "changed": changed}

    async def _set_pin(self, frame: dict[str, Any], pinned: bool) -> dict[str, Any]:
        assert self.address is not None
        message, conversation = self._member_message(frame)
        changed = self.store.set_pinned(message, *self.address, pinned, self.server.now_ms())
        if changed:
            self.server.wake(conversation.members)
        return {"message": message.id, "changed": changed}

    async def _pin(self, frame: dict[str, Any]) -> dict[str, Any]:
        return await self._set_pin(frame, True)

    async def _unpin(self, frame: dict[str, Any]) -> dict[str, Any]:
        return await self._set_pin(frame, False)

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        assert self.address is not None
        ids = [m.id for m in messages]
        reactions = self.store.reactions(ids)
        pinned = self.store.pinned(ids)
        titles: dict[int, str] = {}
        result = []
        for m in messages:
            if m.conversation not in titles:
                conversation = self.store.conversation(m.conversation)
                assert conversation is not None
                titles[m.conversation] = conversation.title_for(self.address.account)
            result.append({"id": m.id, "conversation": titles[m.conversation], "from": m.sender,
                           "device": m.device_id, "ts": m.ts, "text": m.text,
                           "secret": m.secret, "reactions": [list(r) for r in reactions[m.id]],
                           "pinned": m.id in pinned})
        return result

    async def _pins(self, frame: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation_field(frame)
        found = [] if conversation.id is None else self.store.pins(conversation.id)
        return {"messages": self._messages(found)}

    async def _history(self, frame: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation_field(frame)
        before = frame.get("before")
        if before is not None:
            before = _message_id_field(frame, "before")
        limit = frame.get("limit", 50)
        if type(limit) is not int or not 0 < limit <= api.MAX_HISTORY_PAGE:
            raise RequestError(api.BAD_REQUEST, f"limit must be 1 to {api.MAX_HISTORY_PAGE}")
        if conversation.id is None:
            return {"messages": [], "more": False}
        found = self.store.history(conversation.id, before, limit + 1)
        more = len(found) > limit
        return {"messages": self._messages(found[-limit:]), "more": more}

    async def _search(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        text = _require(frame, "text", str)
        if not text.strip() or len(text) > 1000:
            raise RequestError(api.BAD_REQUEST, "search text must be 1 to 1000 characters")
        if "\x00" in text:
            raise RequestError(api.BAD_REQUEST, "search text may not contain NUL characters")
        limit = frame.get("limit", 50)
        if type(limit) is not int or not 0 < limit <= api.MAX_SEARCH_RESULTS:
            raise RequestError(api.BAD_REQUEST,
                               f"limit must be 1 to {api.MAX_SEARCH_RESULTS}")
        try:
            found = self.store.search(self.address.account, text, limit)
        except sqlite3.Error:  # FTS5 refused the query: the caller's text, not our state
            log.info("search from %s: the full-text index refused the query", self.address)
            raise RequestError(api.BAD_REQUEST, "the search text cannot be searched for; "
                               "try other words") from None
        return {"messages": self._messages(found)}

    async def _ack(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.address is not None
        seq = _positive_field(frame, "seq", "an event's seq")
        self.store.acknowledge(*self.address, seq)
        return {}

    # -- pushes ------------------------------------------------------------------------------

    def _delivery_frame(self, event: Event) -> dict[str, Any]:
        assert self.address is not None
        conversation = self.store.conversation(event.conversation)
        assert conversation is not None
        frame: dict[str, Any] = {
            "type": "event", "seq": event.seq, "kind": event.kind,
            "conversation": conversation.title_for(self.address.account),
            "from": event.account, "device": event.device_id, "ts": event.ts}
        if event.message is not None:
            frame["message"] = event.message
        if event.kind == "message":
            frame["secret"] = event.secret
            if event.secret:
                frame["envelope"] = event.envelope  # None for the sending device
            else:
                frame["text"] = event.text
        elif event.kind == "reaction":
            frame["emoji"] = event.emoji
        elif event.kind == "group":
            frame["members"] = list(conversation.members)
        return frame

    def _first_cursor(self) -> int:
        assert self.address is not None
        return self.store.cursor(*self.address)

    def _pending(self, after: int) -> Sequence[Event]:
        assert self.address is not None
        account, device_id = self.address
        return self.store.events(account, device_id, after, self.server.config.delivery_batch)


_Connection.public_handlers = {
    "register": _Connection._register, "login": _Connection._login, "auth": _Connection._auth,
    "ping": _Connection._ping,
}
_Connection.authenticated_handlers = {
    "ping": _Connection._ping,
    "publish_prekeys": _Connection._publish_prekeys, "get_devices": _Connection._get_devices,
    "fetch_bundles": _Connection._fetch_bundles,
    "conversation": _Connection._conversation_info,
    "group_create": _Connection._group_create, "group_add": _Connection._group_add,
    "secret": _Connection._secret, "send": _Connection._send_message,
    "react": _Connection._react, "unreact": _Connection._unreact,
    "pin": _Connection._pin, "unpin": _Connection._unpin, "pins": _Connection._pins,
    "history": _Connection._history, "search": _Connection._search, "ack": _Connection._ack,
}

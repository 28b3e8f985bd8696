"""The social-transport client: log in with a password, send, receive, react, pin, search.

:class:`SocialClient` owns the device's state in ``HOME/social.db`` (mode 0600, separate from the
private transport's ``state.db``): the session token, and for secret conversations an
:class:`~client.core.protocol_store.SqliteProtocolStore` plus the plaintext of the secret messages
this device sent or decrypted, in the same file, so a decrypted message commits together with
the ratchet step. Received events are stored unseen before they are shown (shown again after
a crash, never lost), and a conversation once known to be secret stays secret here whatever the
server says later. :meth:`SocialClient.session` yields a logged-in :class:`SocialSession` on one
connection. The capability table (DESIGN §9) is checked here before anything is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from e2e_proto import relay_api
from e2e_proto import social_api as api
from e2e_proto.address import Address, is_valid_account, is_valid_device_id
from e2e_proto.capabilities import CAPABILITIES, SOCIAL, require
from e2e_proto.errors import DuplicateMessageError, E2EProtoError, RemoteProtocolError
from e2e_proto.keys import IdentityKeyPair, OneTimePreKey, SignedPreKey, X25519PrivateKey
from e2e_proto.payload import Payload
from e2e_proto.session import SessionCipher, process_prekey_bundle
from e2e_proto.wire import Envelope

from ..core.connection import Connection, ConnectionLost, ServerClient, ServerError
from ..core.errors import ClientError
from ..core.home_state import HomeState

STATE_FILE = "social.db"
ONE_TIME_PREKEY_TARGET = 40
ONE_TIME_PREKEY_LOW = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS social_settings (name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS secret_messages (
    id INTEGER PRIMARY KEY, conversation TEXT NOT NULL, sender TEXT NOT NULL,
    device INTEGER NOT NULL, ts INTEGER NOT NULL, text TEXT);
CREATE TABLE IF NOT EXISTS secret_conversations (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS known_messages (id INTEGER PRIMARY KEY, conversation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS received_events (
    seq INTEGER PRIMARY KEY, seen INTEGER NOT NULL, kind TEXT NOT NULL,
    conversation TEXT NOT NULL, sender TEXT NOT NULL, device INTEGER NOT NULL,
    ts INTEGER NOT NULL, message INTEGER, text TEXT, emoji TEXT, secret INTEGER NOT NULL,
    warning TEXT);
"""


class SocialState(HomeState):
    """What a social device keeps between runs, in ``HOME/social.db`` (mode 0600)."""

    state_file = STATE_FILE
    schema = _SCHEMA

    def get(self, name: str) -> Any:
        """A stored setting, or None."""
        row = self.db.execute("SELECT value FROM social_settings WHERE name = ?",
                              (name,)).fetchone()
        return None if row is None else row[0]

    def set(self, name: str, value: object) -> None:
        """Store a setting."""
        self.db.execute("INSERT OR REPLACE INTO social_settings VALUES (?, ?)", (name, value))

    @property
    def account(self) -> str | None:
        """The account this device is logged in as."""
        return self.get("account")  # type: ignore[no-any-return]

    @property
    def device_id(self) -> int:
        """This device's id on the social server."""
        return int(self.get("device_id") or 0)

    def next_id(self, counter: str) -> int:
        """A fresh value of a local counter (prekey ids), starting at 1."""
        value = int(self.get(counter) or 0) + 1
        self.set(counter, value)
        return value

    def identity(self) -> IdentityKeyPair:
        """This device's identity key for secret conversations (made on first use)."""
        if not self.protocol.has_identity():
            self.protocol.set_identity_key_pair(IdentityKeyPair.generate())
        return self.protocol.identity_key_pair()

    def save_secret(self, message: SocialEvent) -> bool:
        """Keep a secret message's plaintext; False when it was kept already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO secret_messages VALUES (?, ?, ?, ?, ?, ?)",
            (message.message, message.conversation, message.sender, message.device,
             message.ts, message.text))
        return cursor.rowcount == 1

    def secret_text(self, message_id: int) -> str | None:
        """The plaintext of a secret message this device sent or decrypted."""
        row = self.db.execute("SELECT text FROM secret_messages WHERE id = ?",
                              (message_id,)).fetchone()
        return None if row is None else row[0]

    # -- what this device knows for itself, whatever the server says later -------------------

    def mark_secret(self, name: str) -> None:
        """Remember that the one-to-one conversation with ``name`` is secret, for good."""
        self.db.execute("INSERT OR IGNORE INTO secret_conversations VALUES (?)", (name,))

    def is_secret(self, name: str) -> bool:
        """Whether this device learned that the conversation with ``name`` is secret."""
        return self.db.execute("SELECT 1 FROM secret_conversations WHERE name = ?",
                               (name,)).fetchone() is not None

    def remember_message(self, message_id: int, conversation: str) -> None:
        """Note which conversation a message id belongs to (the first answer is kept)."""
        self.db.execute("INSERT OR IGNORE INTO known_messages VALUES (?, ?)",
                        (message_id, conversation))

    def message_in_secret(self, message_id: int) -> bool:
        """Whether a message is known to be in a conversation this device knows is secret."""
        if self.secret_text(message_id) is not None:
            return True
        row = self.db.execute("SELECT conversation FROM known_messages WHERE id = ?",
                              (message_id,)).fetchone()
        return row is not None and self.is_secret(row[0])

    # -- received events: stored before they are shown, shown before they are marked seen -----

    def add_event(self, event: SocialEvent) -> None:
        """Keep a received event, unseen (a secret message's text stays in ``secret_messages``).

        Call it in the transaction that moves ``last_seq``: the event is then shown on a later
        run if this one ends before :meth:`mark_event_seen`.
        """
        text = None if event.secret and event.kind == "message" else event.text
        self.db.execute(
            "INSERT OR IGNORE INTO received_events VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.seq, event.kind, event.conversation, event.sender, event.device, event.ts,
             event.message, text, event.emoji, int(event.secret), event.warning))

    def unseen_events(self) -> list[SocialEvent]:
        """Received events not yet shown, in order."""
        events = []
        for row in self.db.execute(
                "SELECT seq, kind, conversation, sender, device, ts, message, text, emoji, "
                "secret, warning FROM received_events WHERE seen = 0 ORDER BY seq").fetchall():
            event = SocialEvent(*row[:9], secret=bool(row[9]), warning=row[10])
            if event.secret and event.kind == "message" and event.message is not None:
                event = dataclasses.replace(event, text=self.secret_text(event.message))
            events.append(event)
        return events

    def mark_event_seen(self, seq: int) -> None:
        """Record that an event was shown."""
        self.db.execute("UPDATE received_events SET seen = 1 WHERE seq = ?", (seq,))


@dataclass(frozen=True, slots=True)
class SocialEvent:
    """Something that happened in a conversation, as shown to the user.

    ``kind``: ``message``, ``reaction`` (``emoji`` None when removed), ``pin``, ``unpin``,
    ``secret``, ``group``, or ``notice`` (``warning`` says what could not be read).
    """

    seq: int
    kind: str
    conversation: str
    sender: str
    device: int
    ts: int
    message: int | None = None
    text: str | None = None
    emoji: str | None = None
    secret: bool = False
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message from history, pins or search; ``text`` of a secret one comes from local state."""

    id: int
    conversation: str
    sender: str
    device: int
    ts: int
    text: str | None
    secret: bool
    reactions: list[tuple[str, str]]
    pinned: bool


EventHandler = Callable[[SocialEvent], Awaitable[None] | None]


def check_text(text: str) -> None:
    """Refuse an empty or oversized message before it is sent."""
    if not text:
        raise ClientError("a message needs some text")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > api.MAX_TEXT_BYTES:
        raise ClientError(f"message too large: {size} bytes, at most {api.MAX_TEXT_BYTES}")


def check_name(name: str, what: str = "name") -> None:
    """Refuse a malformed account or group name."""
    if not is_valid_account(name):
        raise ClientError(f"invalid {what} {name[:64]!r}: use 1-64 lowercase letters, digits, "
                          "'_', '.' or '-', starting with a letter or digit")


class SocialClient(ServerClient[SocialState]):
    """A device's client for the social server, over the state in ``state``."""

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[SocialSession]:
        """An unauthenticated connection: register or log in next."""
        async with self.open_connection() as connection:
            yield SocialSession(self, connection)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SocialSession]:
        """A connection authenticated with this device's token, its prekeys published."""
        async with self.connect() as session:
            await session.authenticate()
            try:
                await session.ensure_prekeys()
            except SocialError as exc:
                if exc.code != api.UNAVAILABLE:
                    raise
                # The server cannot write now (disk full, read-only): reading and receiving
                # still work, and the keys are published on the next connection.
            yield session


class SocialError(ClientError):
    """The social server refused a request; ``code`` is its error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _refused(exc: ServerError) -> SocialError:
    return SocialError(f"the social server refused: {exc} ({exc.code})", exc.code)


class SocialSession:
    """One connection of a :class:`SocialClient`."""

    def __init__(self, client: SocialClient, connection: Connection) -> None:
        self.client = client
        self.state = client.state
        self.connection = connection
        self.address: Address | None = None

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        """A request whose refusal becomes a one-line :class:`ClientError` (code kept)."""
        try:
            return await self.connection.request(kind, **fields)
        except ServerError as exc:
            raise _refused(exc) from None

    # -- accounts -----------------------------------------------------------------------------

    async def register(self, account: str, password: str) -> int:
        """Create ``account`` and log this device in; returns the device id."""
        return await self._log_in("register", account, password)

    async def login(self, account: str, password: str) -> int:
        """Log this device in to ``account`` (a new device id each time); the device id."""
        return await self._log_in("login", account, password)

    async def _log_in(self, kind: str, account: str, password: str) -> int:
        check_name(account, "account name")
        current = self.state.account
        if current is not None and current != account:
            raise ClientError(f"this home is logged in as {current!r}; use another --home")
        if kind == "register" and len(password) < api.MIN_PASSWORD_LENGTH:
            raise ClientError(f"a password needs at least {api.MIN_PASSWORD_LENGTH} characters")
        response = await self.request(kind, account=account, password=password)
        device_id = int(response["device_id"])
        with self.state.protocol.transaction():
            self.state.set("account", account)
            self.state.set("device_id", device_id)
            self.state.set("token", self.state.protocol.seal(response["token"], "token"))
            self.state.set("last_seq", 0)
        self.address = Address(account, device_id)
        await self.ensure_prekeys()
        return device_id

    async def authenticate(self) -> None:
        """Log this connection in with the stored session token."""
        sealed = self.state.get("token")
        token = None if sealed is None else self.state.protocol.unseal(sealed, "token")
        if self.state.account is None or token is None:
            raise ClientError("not logged in: run 'e2e-chat --transport social register NAME' "
                              "or 'login NAME' first")
        try:
            response = await self.connection.request("auth", token=token)
        except ServerError as exc:
            if exc.code in (api.BAD_TOKEN, api.TOKEN_EXPIRED):
                raise ClientError(f"{exc}: run 'e2e-chat --transport social login "
                                  f"{self.state.account}'") from None
            raise _refused(exc) from None
        self.address = Address(response["account"], int(response["device_id"]))

    async def ensure_prekeys(self) -> None:
        """Publish this device's identity, signed prekey and enough one-time prekeys."""
        store = self.state.protocol
        identity = self.state.identity()
        spk_id = self.state.get("spk_id")
        spk = None if spk_id is None else store.load_signed_prekey(int(spk_id))
        if spk is None:
            spk = SignedPreKey.create(identity, self.state.next_id("spk_counter"),
                                      X25519PrivateKey.generate(self.client.random))
            store.store_signed_prekey(spk)
            self.state.set("spk_id", spk.key_id)
        response = await self.request(
            "publish_prekeys", identity_key=identity.public_key.raw,
            signed_prekey=[spk.key_id, spk.public_key.raw, spk.signature])
        count = int(response.get("one_time_prekeys", 0))
        if count < ONE_TIME_PREKEY_LOW:
            keys = [OneTimePreKey(self.state.next_id("opk_counter"),
                                  X25519PrivateKey.generate(self.client.random))
                    for _ in range(ONE_TIME_PREKEY_TARGET - count)]
            store.store_one_time_prekeys(keys)  # kept before they are published
            await self.request("publish_prekeys", identity_key=identity.public_key.raw,
                               one_time_prekeys=[[k.key_id, k.public_key.raw] for k in keys])

    # -- conversations ------------------------------------------------------------------------

    async def conversation(self, name: str) -> dict[str, Any]:
        """``{conversation, kind, members, secret}`` of the account or group ``name``."""
        check_name(name)
        info = await self.request("conversation", conversation=name)
        if info.get("kind") == "direct" and info.get("secret") is True:
            self.state.mark_secret(name)  # a server may switch it on, never off again
        return info

    async def group_create(self, name: str, members: list[str]) -> dict[str, Any]:
        """Create a group of this account and ``members`` (the capability table's limit)."""
        assert self.address is not None
        check_name(name, "group name")
        for member in members:
            check_name(member, "member name")
        limit = CAPABILITIES[SOCIAL].max_group_members
        count = len(set(members) | {self.address.account})
        if count > limit:
            raise ClientError(f"a group has at most {limit} members (this would make {count})")
        return await self.request("group_create", name=name, members=members)

    async def group_add(self, name: str, members: list[str]) -> dict[str, Any]:
        """Add ``members`` to the group ``name``."""
        check_name(name, "group name")
        return await self.request("group_add", conversation=name, members=members)

    async def make_secret(self, name: str) -> bool:
        """Make the one-to-one conversation with ``name`` end-to-end encrypted, for both sides.

        Returns False when it was secret already.
        """
        check_name(name)
        info = await self.conversation(name)
        if info["kind"] != "direct":
            raise ClientError("secret conversations are one to one; groups on the social "
                              "transport are not end-to-end encrypted")
        response = await self.request("secret", conversation=name)
        self.state.mark_secret(name)
        return bool(response["changed"])

    # -- sending ------------------------------------------------------------------------------

    async def send_text(self, name: str, text: str, client_id: bytes | None = None) -> int:
        """Send ``text`` to the account or group ``name``; the server's message id.

        In a secret conversation the text is encrypted for every other device of both members
        and the server gets only envelopes. A conversation this device once learned is secret
        stays secret here, whatever the server answers later: its text is never sent in the
        clear. Resending after a lost answer with the same ``client_id`` (16 bytes; random when
        not given) cannot store the message twice.
        """
        check_text(text)
        client_id = client_id or self.client.random(api.CLIENT_ID_SIZE)
        info = await self.conversation(name)
        if self.state.is_secret(name):
            assert self.address is not None
            return await self._send_secret(name, sorted({self.address.account, name}), text,
                                           client_id)
        if info.get("secret"):
            return await self._send_secret(name, info["members"], text, client_id)
        response = await self.request("send", conversation=name, text=text, client_id=client_id)
        message_id = int(response["message"])
        self.state.remember_message(message_id, name)
        return message_id

    async def _send_secret(self, name: str, members: list[str], text: str,
                           client_id: bytes) -> int:
        assert self.address is not None
        me = self.address
        payload = Payload.new("text", int(self.client.clock() * 1000), self.client.random,
                              text=text).encode()
        for attempt in range(2):
            targets = await self._secret_targets(members)
            cipher = SessionCipher(self.state.protocol, me, self.client.random)
            envelopes = [cipher.encrypt(target, payload).encode() for target in targets]
            try:
                response = await self.connection.request("send", conversation=name,
                                                         envelopes=envelopes,
                                                         client_id=client_id)
            except ServerError as exc:
                if exc.code == api.DEVICE_MISMATCH and attempt == 0:
                    for account, device_id in exc.details.get("stale", []):
                        self.state.protocol.delete_session(Address(account, device_id))
                    continue
                if exc.code == api.NOT_SECRET:
                    raise ClientError(f"the server says the conversation with {name} is not "
                                      "secret, but it was made secret: refusing to send it "
                                      "in the clear") from None
                raise _refused(exc) from None
            message_id = int(response["message"])
            with self.state.protocol.transaction():
                self.state.save_secret(SocialEvent(0, "message", name, me.account,
                                                   me.device_id, int(response["ts"]),
                                                   message_id, text, secret=True))
                self.state.remember_message(message_id, name)
            return message_id
        raise AssertionError("unreachable")

    async def _secret_targets(self, members: list[str]) -> list[Address]:
        """Every keyed device of ``members`` but this one, each with a session (made here)."""
        assert self.address is not None
        targets: list[Address] = []
        for member in members:
            response = await self.request("get_devices", account=member)
            keys = {d: k for d, k in response["devices"] if k is not None}
            missing = []
            for device_id in keys:
                address = Address(member, device_id)
                if address == self.address:
                    continue
                targets.append(address)
                if self.state.protocol.load_session(address) is None:
                    missing.append(device_id)
            if missing:
                bundles = await self.request("fetch_bundles", account=member,
                                             device_ids=missing)
                for fields in bundles["bundles"]:
                    device_id, bundle = relay_api.bundle_from_wire(fields)
                    address = Address(member, device_id)
                    known = self.state.protocol.get_identity(address)
                    if bundle.identity_key.raw != keys.get(device_id) or (
                            known is not None and known != bundle.identity_key):
                        raise ClientError(f"the identity key of {address} changed; refusing "
                                          "to encrypt to it")
                    process_prekey_bundle(self.state.protocol, address, bundle,
                                          self.client.random)
        return targets

    # -- reactions and pins -------------------------------------------------------------------

    async def react(self, message_id: int, emoji: str) -> bool:
        """Set this account's one reaction to a message; False when it was that already."""
        if CAPABILITIES[SOCIAL].reactions != "emoji" or not api.is_single_emoji(emoji):
            raise ClientError(f"invalid reaction {emoji[:16]!r}: a reaction must be exactly "
                              "one emoji")
        if self.state.message_in_secret(message_id):
            raise ClientError(f"message {message_id} is in a secret conversation: a reaction "
                              "there would be readable by the server, so it is not offered")
        return bool((await self.request("react", message=message_id, emoji=emoji))["changed"])

    async def unreact(self, message_id: int) -> bool:
        """Remove this account's reaction; False when there was none."""
        return bool((await self.request("unreact", message=message_id))["changed"])

    async def pin(self, message_id: int) -> bool:
        """Pin a message for everyone in its conversation; False when it was pinned."""
        require(SOCIAL, "pinning")
        return bool((await self.request("pin", message=message_id))["changed"])

    async def unpin(self, message_id: int) -> bool:
        """Unpin a message; False when it was not pinned."""
        require(SOCIAL, "pinning")
        return bool((await self.request("unpin", message=message_id))["changed"])

    async def pins(self, name: str) -> list[StoredMessage]:
        """The pinned messages of the conversation ``name``."""
        require(SOCIAL, "pinning")
        check_name(name)
        return self._stored((await self.request("pins", conversation=name))["messages"])

    # -- history and search -------------------------------------------------------------------

    async def history(self, name: str, before: int | None = None,
                      limit: int = 50) -> tuple[list[StoredMessage], bool]:
        """A page of the conversation's history, oldest first, and whether older ones exist."""
        require(SOCIAL, "server_history")
        check_name(name)
        fields: dict[str, Any] = {"conversation": name, "limit": limit}
        if before is not None:
            fields["before"] = before
        response = await self.request("history", **fields)
        return self._stored(response["messages"]), bool(response["more"])

    async def search(self, text: str, limit: int = 50) -> list[StoredMessage]:
        """Plaintext messages of this account's conversations holding every word of ``text``."""
        require(SOCIAL, "server_history")
        if not text.strip():
            raise ClientError("search needs some words")
        return self._stored((await self.request("search", text=text, limit=limit))["messages"])

    def _stored(self, messages: list[dict[str, Any]]) -> list[StoredMessage]:
        result = []
        for m in messages:
            if _is_id(m["id"]) and isinstance(m["conversation"], str):
                self.state.remember_message(m["id"], m["conversation"])
            text = m["text"]
            if m["secret"]:
                text = self.state.secret_text(m["id"])
            result.append(StoredMessage(m["id"], m["conversation"], m["from"], m["device"],
                                        m["ts"], text, m["secret"],
                                        [(a, e) for a, e in m["reactions"]], m["pinned"]))
        return result

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, handler: EventHandler, wait: float | None = None) -> None:
        """Show what happened since this device last received, then (with ``wait``) go on.

        Each event is stored locally, unseen, in the transaction that records its ``seq`` (a
        secret message together with its ratchet step), then shown to ``handler``, then marked
        seen, then acknowledged. Events stored but not shown in an earlier run (a crash or a
        lost connection in between) are shown first. Events this device caused itself are
        acknowledged without being shown. ``wait=None`` returns once the backlog is drained;
        ``math.inf`` runs until cancelled.
        """
        for event in self.state.unseen_events():
            await self._show(handler, event)
        with trio.move_on_after(wait if wait is not None else float("inf")):
            async for frame in self.connection.pushes:
                kind = frame.get("type")
                if kind == "event":
                    await self._event(handler, frame)
                elif kind == "queue_empty" and wait is None:
                    return
                elif kind == "error":
                    raise ConnectionLost("the social server closed the connection: "
                                         f"{frame.get('message', 'error')}")
            raise ConnectionLost("the social server closed the connection")

    async def _show(self, handler: EventHandler, event: SocialEvent) -> None:
        result = handler(event)
        if result is not None:
            await result
        self.state.mark_event_seen(event.seq)

    async def _event(self, handler: EventHandler, frame: dict[str, Any]) -> None:
        assert self.address is not None
        seq, message, device, ts = (frame.get(k) for k in ("seq", "message", "device", "ts"))
        if (not _is_id(seq) or not (message is None or _is_id(message))
                or not is_valid_device_id(device) or type(ts) is not int
                or not -2**63 <= ts < 2**63):
            raise ConnectionLost("the social server sent a malformed event")
        if seq <= int(self.state.get("last_seq") or 0):
            await self.request("ack", seq=seq)  # stored in an earlier run; the ack was lost
            return
        event = SocialEvent(seq, str(frame["kind"]), str(frame["conversation"]),
                            str(frame["from"]), device, ts, message, frame.get("text"),
                            frame.get("emoji"), bool(frame.get("secret")))
        mine = (event.sender, event.device) == tuple(self.address)
        if event.kind == "message" and event.secret and not mine:
            event = self._decrypt(event, frame.get("envelope"))
        else:
            with self.state.protocol.transaction():
                self._record(event, mine)
        if not mine:
            await self._show(handler, event)
        await self.request("ack", seq=seq)

    def _record(self, event: SocialEvent, mine: bool = False) -> None:
        """Store an event (unseen unless ``mine``) and its ``seq``, in the caller's transaction.

        A ``secret`` event marks the conversation secret on this device for good.
        """
        if event.kind == "secret":
            self.state.mark_secret(event.conversation)
        if event.message is not None:
            self.state.remember_message(event.message, event.conversation)
        if not mine:
            self.state.add_event(event)
        self.state.set("last_seq", event.seq)

    def _decrypt(self, event: SocialEvent, data: object) -> SocialEvent:
        """Decrypt a secret message; commit it with the ratchet step, the event and its seq."""
        assert self.address is not None
        known = self.state.secret_text(event.message or 0)
        if known is not None:
            event = dataclasses.replace(event, text=known)
            with self.state.protocol.transaction():
                self._record(event)
            return event
        try:
            if type(data) is not bytes:
                raise ClientError("it was not encrypted for this device (logged in later?)")
            envelope = Envelope.decode(data)
            if envelope.recipient != self.address or envelope.sender != Address(
                    event.sender, event.device):
                raise ClientError("its envelope is addressed wrongly")
            if envelope.prekey is not None:
                identity = self.state.protocol.get_identity(envelope.sender)
                if identity is not None and identity != envelope.prekey.identity_key:
                    raise ClientError(f"the identity key of {envelope.sender} changed")
            with self.state.protocol.transaction():
                payload = Payload.decode(SessionCipher(
                    self.state.protocol, self.address, self.client.random).decrypt(envelope))
                text = payload.fields.get("text") if payload.kind == "text" else None
                event = dataclasses.replace(event, text=text if isinstance(text, str)
                                            else f"[unsupported {payload.kind!r}]")
                self.state.save_secret(event)
                self._record(event)
            return event
        except DuplicateMessageError:
            warning = "a secret message was delivered twice"
        except (RemoteProtocolError, ClientError, E2EProtoError) as exc:
            warning = f"a secret message cannot be read: {exc}"
        notice = dataclasses.replace(event, kind="notice", warning=warning)
        with self.state.protocol.transaction():
            self._record(notice)
        return notice


def _is_id(value: object) -> bool:
    """Whether the server sent a usable id or seq (a positive 63-bit integer)."""
    return type(value) is int and 0 < value < 2**63

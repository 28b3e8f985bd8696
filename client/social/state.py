"""What a social device keeps between runs, in ``HOME/social.db`` (mode 0600, separate from the
private transport's ``state.db``).

Its settings (account, device id, the sealed session token, counters), and for secret
conversations the protocol store's tables plus the plaintext of the secret messages this device
sent or decrypted, in the same file, so a decrypted message commits together with the ratchet
step. Received events are stored unseen before they are shown (shown again after a crash, never
lost), and a conversation once known to be secret stays secret here whatever the server says
later. With a passphrase, message texts and reactions are sealed like the keys. The device
keys of the accounts this device holds secret conversations with are pinned as a set: a device
the server lists later is used (and its messages shown) only once the user accepts it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from e2e_proto.at_rest import INTERACTIVE
from e2e_proto.keys import IdentityKeyPair
from storage.sqlite import add_missing_column

from ..core.cross_outbox import CrossOutbox
from ..core.files import FileRecord
from ..core.home_state import HomeState, SealedColumn
from .cross_contacts import CrossContacts

if TYPE_CHECKING:
    from ..core.calls import CallInfo

STATE_FILE = "social.db"
SECRET_TEXT = SealedColumn("secret_messages", "id", "text")
EVENT_TEXT = SealedColumn("received_events", "seq", "text")
EVENT_EMOJI = SealedColumn("received_events", "seq", "emoji")

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
    warning TEXT, held INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pinned_devices (
    account TEXT NOT NULL, device INTEGER NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (account, device));
"""


class SocialState(HomeState):
    """What a social device keeps between runs, in ``HOME/social.db`` (mode 0600)."""

    state_file = STATE_FILE
    schema = _SCHEMA
    sealed_columns = (SECRET_TEXT, EVENT_TEXT, EVENT_EMOJI)

    def __init__(self, home: str | os.PathLike[str], passphrase: str | None = None,
                 cost: tuple[int, int] = INTERACTIVE) -> None:
        super().__init__(home, passphrase, cost)
        self.cross_outbox = CrossOutbox(self.protocol)
        """Sends to the other transport not taken yet (:mod:`client.core.cross_outbox`)."""
        self.cross_contacts = CrossContacts(self.db)
        """The private accounts this device chats with, as verified (:mod:`.cross_contacts`)."""

    def migrate(self) -> None:
        """A home made before events could be held gets the column."""
        add_missing_column(self.db, "received_events", "held INTEGER NOT NULL DEFAULT 0")

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

    def cross_identity(self) -> IdentityKeyPair | None:
        """The account's cross identity key, on the device that made it (sealed at rest)."""
        sealed = self.get("cross_identity_seed")
        if sealed is None:
            return None
        return IdentityKeyPair(self.protocol.unseal(sealed, "cross_identity"))

    def keep_cross_identity(self, identity: IdentityKeyPair) -> None:
        """Keep the cross identity key this device made."""
        self.set("cross_identity_seed", self.protocol.seal(identity.seed, "cross_identity"))
        self.set("cross_identity_key", identity.public_key.raw)

    @property
    def trusted_cross_key(self) -> bytes | None:
        """The cross identity key this device made or joined: the one it trusts for its own
        account's cross device list."""
        return self.get("cross_identity_key")  # type: ignore[no-any-return]

    def save_secret(self, message: SocialEvent) -> bool:
        """Keep a secret message's plaintext; False when it was kept already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO secret_messages VALUES (?, ?, ?, ?, ?, ?)",
            (message.message, message.conversation, message.sender, message.device,
             message.ts, self.seal_text(SECRET_TEXT, message.message, message.text)))
        return cursor.rowcount == 1

    def secret_text(self, message_id: int) -> str | None:
        """The plaintext of a secret message this device sent or decrypted."""
        row = self.db.execute("SELECT text FROM secret_messages WHERE id = ?",
                              (message_id,)).fetchone()
        return None if row is None else self.unseal_text(SECRET_TEXT, message_id, row[0])

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

    # -- the device keys accepted for secret conversations ------------------------------------

    def pinned_devices(self, account: str) -> dict[int, bytes]:
        """The device keys of ``account`` accepted here (empty until first use)."""
        return dict(self.db.execute("SELECT device, key FROM pinned_devices WHERE account = ?",
                                    (account,)).fetchall())

    def pin_devices(self, account: str, keys: dict[int, bytes]) -> None:
        """Accept exactly ``keys`` as ``account``'s devices (the caller's transaction)."""
        self.db.execute("DELETE FROM pinned_devices WHERE account = ?", (account,))
        self.db.executemany("INSERT INTO pinned_devices VALUES (?, ?, ?)",
                            [(account, device, key) for device, key in keys.items()])

    def release_held(self, account: str) -> int:
        """Show on the next receive the events held from ``account``'s devices; how many."""
        return self.db.execute("UPDATE received_events SET held = 0, seen = 0 "
                               "WHERE held = 1 AND sender = ?", (account,)).rowcount

    def held_counts(self) -> list[tuple[str, int]]:
        """``(account, count)`` of events held until the sending device is accepted."""
        return [(str(a), int(n)) for a, n in self.db.execute(
            "SELECT sender, COUNT(*) FROM received_events WHERE held = 1 GROUP BY sender "
            "ORDER BY sender")]

    def is_held(self, message_id: int) -> bool:
        """Whether a message was received from a device not accepted (yet)."""
        return self.db.execute("SELECT 1 FROM received_events WHERE message = ? AND held = 1",
                               (message_id,)).fetchone() is not None

    # -- received events: stored before they are shown, shown before they are marked seen -----

    def add_event(self, event: SocialEvent, held: bool = False) -> None:
        """Keep a received event, unseen (a secret message's text stays in ``secret_messages``).

        Call it in the transaction that moves ``last_seq``: the event is then shown on a later
        run if this one ends before :meth:`mark_event_seen`. A ``held`` event (from a device
        not accepted) is shown only after :meth:`release_held`.
        """
        text = None if event.secret and event.kind == "message" else event.text
        self.db.execute(
            "INSERT OR IGNORE INTO received_events (seq, seen, kind, conversation, sender, "
            "device, ts, message, text, emoji, secret, warning, held) "
            "VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.seq, event.kind, event.conversation, event.sender, event.device, event.ts,
             event.message, self.seal_text(EVENT_TEXT, event.seq, text),
             self.seal_text(EVENT_EMOJI, event.seq, event.emoji), int(event.secret),
             event.warning, int(held)))

    def unseen_events(self) -> list[SocialEvent]:
        """Received events not yet shown (nor held), in order."""
        events = []
        for row in self.db.execute(
                "SELECT seq, kind, conversation, sender, device, ts, message, text, emoji, "
                "secret, warning FROM received_events WHERE seen = 0 AND held = 0 "
                "ORDER BY seq").fetchall():
            seq = row[0]
            event = SocialEvent(*row[:7], self.unseal_text(EVENT_TEXT, seq, row[7]),
                                self.unseal_text(EVENT_EMOJI, seq, row[8]),
                                secret=bool(row[9]), warning=row[10])
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
    ``secret``, ``group``, ``call`` (a ring: ``call`` is the call it announces) or ``notice``
    (``warning`` says what could not be read). A message announcing a file has its ``file``.
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
    file: FileRecord | None = None
    call: CallInfo | None = None


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

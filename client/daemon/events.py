"""Events as the daemon queues and sends them, from what each transport's client shows.

One pair of functions per transport: ``*_event`` makes an event (its queue key, its name and
its JSON parameters) from what the client library hands a receive handler, and the inverse
gives back the library's object, so the CLI's client mode prints an event through the very
functions the direct CLI uses. Names: ``message`` (a file message too, and a private group's
message, with its ``group``), ``sent`` (this account's own messages, from this device through
the daemon or from another device), ``reaction``, ``pin``, ``unpin``, ``secret``,
``group_update``, ``key_changed`` and ``notice``; any other payload kind keeps its own name.
Calls have live events (never queued): ``call_ring`` (a ring, as ``recv`` shows it, with the
call's fields), and ``call_joined``, ``call_left`` and ``call_ended`` for the calls the daemon
takes part in (:mod:`.calls`).

A message announcing a file carries the file's fields as ``recv --json`` shows them (``path``,
``size``, ``mime``, ``sha256``, ``name``, ``error``) and its ``caption``; never its key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from e2e_proto.capabilities import PRIVATE, SOCIAL
from e2e_proto.media import MEDIA_KIND, MediaPayload

from ..cli.common import file_json
from ..core.calls import CallInfo
from ..core.files import FileRecord
from ..private.received import Received
from ..social.state import SocialEvent


class Event(NamedTuple):
    """An event to queue: ``key`` (one event per key, ever), ``name`` and ``params``."""

    key: str
    name: str
    params: dict[str, Any]


_PRIVATE_NAMES = {"text": "message", MEDIA_KIND: "message"}
_SOCIAL_NAMES = {"group": "group_update"}


@dataclass(frozen=True, slots=True)
class ShownMedia:
    """The fields of a file's media payload an event carries: what the CLI shows of it. The
    key, blob id and header stay in the daemon's home."""

    size: int
    mime: str
    name: str | None
    caption: str | None


def file_params(record: FileRecord | None) -> dict[str, Any]:
    """An event's file fields (none without a file): ``recv --json``'s and the caption."""
    if record is None:
        return {}
    return {**file_json(record), "caption": record.media.caption}


def file_from_params(params: dict[str, Any], message: str) -> FileRecord | None:
    """Inverse of :func:`file_params` for the CLI's printers (None without a file): a record
    whose ``media`` holds only the shown fields (:class:`ShownMedia`). ``message`` is the
    file message's id as ``fetch-file`` takes it."""
    if "mime" not in params:
        return None
    media = ShownMedia(params["size"], params["mime"], params["name"], params["caption"])
    sha256 = params["sha256"]
    return FileRecord(message, cast(MediaPayload, media), params["path"],
                      None if sha256 is None else bytes.fromhex(sha256), params["error"])


def _notice_key(transport: str, text: str) -> str:
    """A notice's key: the same reminder, shown again on reconnecting, is queued once."""
    return f"{transport}:notice:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def private_event(received: Received, sent: bool = False) -> Event:
    """The event of a message the private client shows (``sent``: sent through the daemon)."""
    if received.warning is not None:
        return Event(_notice_key(PRIVATE, received.warning), "notice",
                     {"transport": PRIVATE, "text": received.warning})
    outgoing = received.outgoing or sent
    name = "sent" if outgoing else _PRIVATE_NAMES.get(received.kind, received.kind)
    return Event(f"{PRIVATE}:{received.id.hex()}", name, {
        "transport": PRIVATE, "id": received.id.hex(), "from": received.sender,
        "device": received.sender_device,
        "to": received.peer if outgoing and received.group is None else None,
        "group": received.group, "ts": received.ts, "kind": received.kind,
        "text": received.text, **file_params(received.file)})


def received_from_params(name: str, params: dict[str, Any]) -> Received:
    """Inverse of :func:`private_event`: the message as the private CLI prints it."""
    if name == "notice":
        return Received("", 0, "", b"", 0, "notice", None, warning=str(params["text"]))
    outgoing = name == "sent"
    return Received(params["from"], params["device"], params["to"] or params["from"],
                    bytes.fromhex(params["id"]), params["ts"], params["kind"], params["text"],
                    outgoing, file=file_from_params(params, params["id"]),
                    group=params.get("group"))


def key_changed_event(account: str, key: bytes) -> Event:
    """The event of a contact's account key changing (once per new key)."""
    return Event(f"{PRIVATE}:key_changed:{account}:{key.hex()}", "key_changed",
                 {"transport": PRIVATE, "account": account})


def social_event(event: SocialEvent) -> Event:
    """The event of something the social client shows."""
    params = {"transport": SOCIAL, "seq": event.seq, "kind": event.kind,
              "conversation": event.conversation, "from": event.sender, "device": event.device,
              "ts": event.ts, "id": None if event.message is None else str(event.message),
              "text": event.text if event.warning is None else event.warning,
              "emoji": event.emoji, "secret": event.secret, **file_params(event.file)}
    if event.warning is not None:
        key = (f"{SOCIAL}:{event.seq}" if event.seq else _notice_key(SOCIAL, event.warning))
        return Event(key, "notice", params)
    return Event(f"{SOCIAL}:{event.seq}", _SOCIAL_NAMES.get(event.kind, event.kind), params)


def social_sent_event(conversation: str, sender: str, device: int, message_id: int, ts: int,
                      text: str | None, secret: bool, file: FileRecord | None = None) -> Event:
    """The event of a message (with ``file``: a file) this device sent through the daemon on
    the social transport (``ts`` in milliseconds, the daemon's clock)."""
    return Event(f"{SOCIAL}:sent:{message_id}", "sent", {
        "transport": SOCIAL, "seq": 0, "kind": "message", "conversation": conversation,
        "from": sender, "device": device, "ts": ts, "id": str(message_id), "text": text,
        "emoji": None, "secret": secret, **file_params(file)})


def social_event_from_params(params: dict[str, Any]) -> SocialEvent:
    """Inverse of :func:`social_event`: the event as the social CLI prints it."""
    notice = params["kind"] == "notice"
    message = params["id"]
    return SocialEvent(params["seq"], params["kind"], params["conversation"], params["from"],
                       params["device"], params["ts"],
                       None if message is None else int(message),
                       None if notice else params["text"], params["emoji"],
                       bool(params["secret"]), params["text"] if notice else None,
                       file_from_params(params, str(message)))


def ring_event(item: Received | SocialEvent) -> Event | None:
    """The live ``call_ring`` event of a ring a client shows (None for anything else): the
    ring's fields as a message event's (``kind`` "call", ``text`` what ``recv`` prints) and the
    call's (:func:`call_info_params`)."""
    info = item.call
    if info is None:
        return None
    if isinstance(item, Received):
        base, group = private_event(item), item.group
    else:
        base, group = social_event(item), info.group if isinstance(info.group, str) else None
    return Event(base.key, "call_ring", {**base.params, **call_info_params(info, group)})


def call_info_params(info: CallInfo, group: str | None) -> dict[str, Any]:
    """A call's fields in a ``call_ring`` event and a ``call_list`` entry (``group``: how the
    group is named here, None for a one-to-one call)."""
    return {"call_id": info.call_id.hex(), "group": group, "end_to_end": info.e2e,
            "participants": info.participants, "limit": info.limit}


def call_event(name: str, transport: str, call_id: bytes, **params: Any) -> Event:
    """A live event about a call the daemon takes part in (``call_joined``, ``call_left``,
    ``call_ended``)."""
    return Event(f"{transport}:{name}:{call_id.hex()}", name,
                 {"transport": transport, "call_id": call_id.hex(), **params})

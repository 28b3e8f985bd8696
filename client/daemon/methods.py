"""The method table: every method a client of the daemon may call, in one place.

Each entry names its parameters (the ``e2e-chat`` command's argument names), what it returns,
and its handler per transport (:mod:`.private_methods`, :mod:`.social_methods`) or for the
daemon itself (subscriptions, acknowledgements, status). A feature a transport gains is one
entry here plus its handler. docs/JSONRPC.md documents every entry (a test holds them equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from e2e_proto.capabilities import PRIVATE, SOCIAL

from . import between_methods as between
from . import calls
from . import private_methods as private
from . import social_methods as social
from .jsonrpc import Codes, RpcError
from .table import (
    BOOLEAN,
    CALL_ID,
    EVENT_IDS,
    INTEGER,
    NAME,
    PATH,
    SECONDS,
    STRING,
    STRINGS,
    Method,
    Param,
)

if TYPE_CHECKING:
    from .connections import CallContext


async def _subscribe(context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    if not context.client.can_subscribe:
        raise RpcError(Codes.METHOD_NOT_FOUND, "subscribe is not available here: over HTTP, "
                       "GET /events is the subscription")
    rings = await context.daemon.ringing()  # asked first: they come before the queue
    subscription = context.client.subscribe()
    subscription.push_events(rings)
    return {"subscription": subscription.id,
            "queued": context.daemon.hub.queue.pending_count}


async def _unsubscribe(context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"unsubscribed": context.client.unsubscribe(params["subscription"])}


async def _ack(context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"acked": context.daemon.hub.ack(params["ids"])}


async def _auth(context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    context.client.authenticate(params["token"])
    return {}


async def _daemon_info(context: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    return context.daemon.info()


NAME_PARAM = Param("name", NAME, "the other account (or group, on social)")
MESSAGE_ID = Param("message_id", NAME, "the message id, as events show it (private: hex, a "
                   "unique prefix is enough; social: a decimal string)")
ACCEPT = Param("accept", BOOLEAN, "accept the keys (devices) as they are now", required=False)
TEXT = Param("text", STRING, "the message text")
GROUP = Param("name", NAME, "group name")
MEMBER = Param("member", NAME, "a member's account")
MEMBERS = Param("members", STRINGS, "member accounts")
FILE = (Param("path", PATH, "the file to send, as the daemon sees it (client mode sends the "
              "caller's path made absolute)"),
        Param("caption", STRING, "a caption shown with the file", required=False),
        Param("mime", NAME, "its MIME type (default: guessed from the file name)",
              required=False))
FILE_FIELDS = "path, size, mime, sha256, name, error"
STREAM = (Param("seconds", SECONDS, "how long to stream (default and at most: the daemon's "
                "max_call_seconds, 3600)", required=False),
          Param("video", BOOLEAN, "video-like frames instead of audio-like ones",
                required=False))
CALL = Param("call_id", CALL_ID, "the call's id, as call_start, call_list and events show it")
PLACED = "{call_id, started, participant, end_to_end, participants, seconds, video}"
OUTCOME = "{call_id, running, reason, error, report}"
PROFILE = "{account, name, about, avatar, end_to_end} (private: and notices)"
CROSS = "{account, enabled, ...} (private: and notices)"
CROSS_DEVICE = Param("device_id", INTEGER, "the device's id")

METHODS: tuple[Method, ...] = (
    Method("subscribe", "Start receiving events as notifications on this connection: every "
           "unacknowledged event, oldest first, then caught_up, then new ones.",
           "{subscription, queued}", daemon=_subscribe),
    Method("unsubscribe", "Stop a subscription of this connection (all of them without "
           "subscription); what it was sent and did not ack stays queued.",
           "{unsubscribed: [subscription ids]}",
           (Param("subscription", INTEGER, "the id subscribe returned", required=False),),
           daemon=_unsubscribe),
    Method("ack", "Remove events from the queue, for every subscriber.",
           "{acked: [the ids that were queued]}",
           (Param("ids", EVENT_IDS, "event_id values of notifications"),), daemon=_ack),
    Method("auth", "Present the bearer token (TCP: before any other call).", "{}",
           (Param("token", STRING, "the contents of HOME/daemon.token"),), daemon=_auth),
    Method("daemon_info", "The daemon's accounts, connections and queue.",
           "{version, home, transports, queued, full, subscriptions, clients}",
           daemon=_daemon_info),
    Method("whoami", "This device's account and device id.", "{account, device}",
           on={PRIVATE: private.whoami, SOCIAL: social.whoami}, command="whoami"),
    Method("send", "Send one message.", "private: {id, ts}; social: {id}",
           (NAME_PARAM, TEXT), on={PRIVATE: private.send, SOCIAL: social.send},
           command="send"),
    Method("react", "React to a message with one emoji (private: a short text).", "private: "
           "{}; social: {changed}", (MESSAGE_ID, Param("emoji", NAME, "exactly one emoji")),
           on={PRIVATE: private.react, SOCIAL: social.react}, command="react"),
    Method("unreact", "Remove your reaction to a message.", "private: {}; social: {changed}",
           (MESSAGE_ID,), on={PRIVATE: private.unreact, SOCIAL: social.unreact},
           command="unreact"),
    Method("pin", "Pin a message (social).", "{changed}", (MESSAGE_ID,),
           on={SOCIAL: social.pin}, command="pin"),
    Method("unpin", "Unpin a message (social).", "{changed}", (MESSAGE_ID,),
           on={SOCIAL: social.unpin}, command="unpin"),
    Method("pins", "The pinned messages of a conversation (social).", "{messages}",
           (NAME_PARAM,), on={SOCIAL: social.pins}, command="pins"),
    Method("history", "A page of a conversation's history, oldest first (social).",
           "{messages, more}", (NAME_PARAM, Param("before", NAME, "only messages before this "
                                                  "message id", required=False)),
           on={SOCIAL: social.history}, command="history"),
    Method("search", "Full-text search of your conversations (social).", "{messages}",
           (Param("text", STRING, "words to find"),), on={SOCIAL: social.search},
           command="search"),
    Method("secret", "Make the conversation with an account end-to-end encrypted (social).",
           "{changed}", (NAME_PARAM,), on={SOCIAL: social.secret}, command="secret"),
    Method("verify", "Private: the safety number with an account; social: its device keys.",
           "private: {key_changed, safety_number, released}; social: {devices, accepted}",
           (NAME_PARAM, ACCEPT), on={PRIVATE: private.verify, SOCIAL: social.verify},
           command="verify"),
    Method("devices", "This account's devices.", "private: {devices: [{id, name, linked_at, "
           "last_seen}], this_device}; social: {devices: [{id, key, created, last_seen, "
           "expires, current}], this_device}",
           on={PRIVATE: private.devices, SOCIAL: social.devices}, command="devices"),
    Method("approve", "On the primary: link the device showing a link code (private).",
           "{device_id}", (Param("code", NAME, "the link code, XXXX-XXXX-XXXX-XXXX"),),
           on={PRIVATE: private.approve}, command="approve"),
    Method("unlink", "Private, on the primary: remove a linked device; social: revoke a "
           "device's login.", "{device_id}",
           (Param("device_id", INTEGER, "the device id to remove"),),
           on={PRIVATE: private.unlink, SOCIAL: social.unlink}, command="unlink"),
    Method("send_file", "Send a file: encrypted once, uploaded (a call again after a lost "
           "connection resumes the upload), announced to the account (social: or group).",
           f"private: {{id, ts, {FILE_FIELDS}}}; social: {{id, end_to_end, {FILE_FIELDS}}}",
           (NAME_PARAM, *FILE), on={PRIVATE: private.send_file, SOCIAL: social.send_file},
           command="send-file"),
    Method("fetch_file", "Download (again) the file of a message this account received.",
           f"{{id, {FILE_FIELDS}}}", (MESSAGE_ID,),
           on={PRIVATE: private.fetch_file, SOCIAL: social.fetch_file}, command="fetch-file"),
    Method("group_create", "Create a group (private: you are its admin).",
           "private: a group; social: {name, members}", (GROUP, MEMBERS),
           on={PRIVATE: private.group_create, SOCIAL: social.group_create}, command="group"),
    Method("group_add", "Add members to a group (private: admins).",
           "private: a group; social: {name, members}", (GROUP, MEMBERS),
           on={PRIVATE: private.group_add, SOCIAL: social.group_add}, command="group"),
    Method("group_remove", "Remove a member from a group (private: admins).",
           "private: a group; social: {name, member}", (GROUP, MEMBER),
           on={PRIVATE: private.group_remove, SOCIAL: social.group_remove}, command="group"),
    Method("group_leave", "Leave a group.", "private: a group; social: {name}", (GROUP,),
           on={PRIVATE: private.group_leave, SOCIAL: social.group_leave}, command="group"),
    Method("group_rename", "Rename a group (private: admins).",
           "private: a group; social: {name, new_name}",
           (GROUP, Param("new_name", NAME, "the group's new name")),
           on={PRIVATE: private.group_rename, SOCIAL: social.group_rename}, command="group"),
    Method("group_members", "A group's members (private: and admins).",
           "private: a group; social: {name, members}", (GROUP,),
           on={PRIVATE: private.group_members, SOCIAL: social.group_members}, command="group"),
    Method("group_admin", "Private, admins: make a member an admin, or no longer one.",
           "a group", (GROUP, MEMBER, Param("revoke", BOOLEAN, "no longer an admin",
                                            required=False)),
           on={PRIVATE: private.group_admin, SOCIAL: social.group_admin}, command="group"),
    Method("group_send", "Send one message to a group.", "private: {id, ts}; social: {id}",
           (GROUP, TEXT), on={PRIVATE: private.group_send, SOCIAL: social.send},
           command="group"),
    Method("group_send_file", "Send a file to a group (private: one group message; social: "
           "as send_file).", f"private: {{id, ts, {FILE_FIELDS}}}; social: as send_file",
           (GROUP, *FILE), on={PRIVATE: private.group_send_file, SOCIAL: social.send_file},
           command="group"),
    Method("profile_set", "Change your profile; what is not given stays (private: sent end to "
           "end to every contact; social: kept by the server).", PROFILE,
           (Param("name", STRING, "display name (at most 64 characters)", required=False),
            Param("about", STRING, "about text (at most 500 characters)", required=False),
            Param("avatar", PATH, "a picture file, as the daemon sees it (client mode sends the "
                  "caller's path made absolute)", required=False)),
           on={PRIVATE: between.private_profile_set, SOCIAL: between.social_profile_set},
           command="profile"),
    Method("profile_show", "A profile: yours, or an account's.", PROFILE,
           (Param("name", NAME, "the account (default: yours)", required=False),),
           on={PRIVATE: between.private_profile_show, SOCIAL: between.social_profile_show},
           command="profile"),
    Method("status_post", "Post a status update, shown for 24 hours (private: to every "
           "contact, end to end).", "{posted_ms}",
           (Param("text", STRING, "the update (at most 700 characters)"),),
           on={PRIVATE: between.private_status_post, SOCIAL: between.social_status_post},
           command="status"),
    Method("status_list", "The live status updates of you and your contacts, newest first.",
           "{statuses: [{account, text, posted_ms}]}",
           on={PRIVATE: between.private_status_list, SOCIAL: between.social_status_list},
           command="status"),
    Method("link_account", "Private, on the primary: link the account to the home's social "
           "account (the daemon must hold both; both keys sign).",
           "{account, social_account, sharing}",
           (Param("social_home", PATH, "the home of the social login that signs: the daemon's "
                  "own (the default; any other is code 1)", required=False),),
           on={PRIVATE: between.link_account}, command="link-account"),
    Method("unlink_account", "Private, on the primary: end the account link.",
           "{social_account}", on={PRIVATE: between.unlink_account},
           command="unlink-account"),
    Method("sharing", "Private: what the account link shared with the social server, and "
           "when.", "{linked, cross, entries}", on={PRIVATE: between.sharing},
           command="sharing"),
    Method("linked", "Social: the private account linked to this one, and what it shared.",
           "{linked}", on={SOCIAL: between.linked}, command="linked"),
    Method("cross_on", "Take chats with the other transport (social: make the cross "
           "identity, or ask to join it).", CROSS,
           on={PRIVATE: between.private_cross_on, SOCIAL: between.social_cross_on},
           command="cross"),
    Method("cross_off", "Stop taking chats with the other transport.", CROSS,
           on={PRIVATE: between.private_cross_off, SOCIAL: between.social_cross_off},
           command="cross"),
    Method("cross_status", "Whether chats with the other transport are on (social: which "
           "devices take part, which ask to join).", CROSS,
           on={PRIVATE: between.private_cross_status, SOCIAL: between.social_cross_status},
           command="cross"),
    Method("cross_approve", "Social, on the device holding the cross identity: add a device "
           "that asked to join.", "{device_id, devices}",
           (CROSS_DEVICE, Param("key", NAME, "the start of the key it printed (16+ hex "
                                "digits)")),
           on={SOCIAL: between.cross_approve}, command="cross approve"),
    Method("cross_remove", "Social, on the device holding the cross identity: take a device "
           "off.", "{device_id, devices}", (CROSS_DEVICE,),
           on={SOCIAL: between.cross_remove}, command="cross remove"),
    Method("call_start", "Call an account (joining its call to you if it is calling) or a "
           "group (joining its running call if there is one); the daemon streams until "
           "call_leave, call_end or seconds.", PLACED,
           (Param("name", NAME, "the account to call", required=False),
            Param("group", NAME, "the group to call (instead of name)", required=False),
            *STREAM), on={PRIVATE: calls.call_start, SOCIAL: calls.call_start},
           command="call"),
    Method("call_join", "Join a call that rings here (as call --answer without call_id); the "
           "daemon streams until call_leave, call_end or seconds.", PLACED,
           (Param("call_id", CALL_ID, "the call to join (default: the newest ringing, one to "
                  "one first)", required=False), *STREAM),
           on={PRIVATE: calls.call_join, SOCIAL: calls.call_join}, command="call"),
    Method("call_list", "The calls this account may join or is in, oldest first.",
           "{calls: [{call_id, from, device, group, end_to_end, participants, limit, joined, "
           "running}]}", on={PRIVATE: calls.call_list, SOCIAL: calls.call_list},
           command="call"),
    Method("call_stats", "What arrived in a call of the daemon so far (wait: once over).",
           OUTCOME, (CALL, Param("wait", BOOLEAN, "answer once the call is over",
                                 required=False)),
           on={PRIVATE: calls.call_stats, SOCIAL: calls.call_stats}, command="call"),
    Method("call_leave", "Leave a call the daemon is in; its outcome.", OUTCOME, (CALL,),
           on={PRIVATE: calls.call_leave, SOCIAL: calls.call_leave}, command="call"),
    Method("call_end", "End a call for everybody (as the server allows); its outcome.",
           OUTCOME, (CALL,), on={PRIVATE: calls.call_end, SOCIAL: calls.call_end},
           command="call"),
)

TABLE: dict[str, Method] = {method.name: method for method in METHODS}

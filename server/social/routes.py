"""Everything a social client may ask: request type -> handler and the fields it reads.

Two tables, before and after login; a type in neither is ``unsupported``. The fuzz tests draw
their requests from these tables, so a route added here is fuzzed too.
"""

from __future__ import annotations

from ..common import blob_requests
from ..common.requests import Route, RouteTable
from ..federation import social_routes
from . import accounts, calls, conversations, directory, history, messages, profiles, reactions

_PING = Route(messages.ping)

PUBLIC_ROUTES: RouteTable = {
    "register": Route(accounts.register, ("account", "password")),
    "login": Route(accounts.login, ("account", "password")),
    "auth": Route(accounts.auth, ("token",)),
    "ping": _PING,
}
"""Requests before login."""

AUTHENTICATED_ROUTES: RouteTable = {
    "ping": _PING,
    "publish_prekeys": Route(directory.publish_prekeys,
                             ("identity_key", "signed_prekey", "one_time_prekeys")),
    "get_devices": Route(directory.get_devices, ("account",)),
    "fetch_bundles": Route(directory.fetch_bundles, ("account", "device_ids")),
    "conversation": Route(conversations.conversation_info, ("conversation",)),
    "group_create": Route(conversations.group_create, ("name", "members")),
    "group_add": Route(conversations.group_add, ("conversation", "members")),
    "group_remove": Route(conversations.group_remove, ("conversation", "member")),
    "group_leave": Route(conversations.group_leave, ("conversation",)),
    "group_rename": Route(conversations.group_rename, ("conversation", "name")),
    "secret": Route(conversations.secret, ("conversation",)),
    "send": Route(messages.send, ("conversation", "text", "envelopes", "client_id", "media",
                                  "blobs")),
    "react": Route(reactions.react, ("message", "emoji")),
    "unreact": Route(reactions.unreact, ("message",)),
    "pin": Route(reactions.pin, ("message",)),
    "unpin": Route(reactions.unpin, ("message",)),
    "pins": Route(history.pins, ("conversation",)),
    "history": Route(history.history, ("conversation", "before", "limit")),
    "search": Route(history.search, ("text", "limit")),
    "ack": Route(messages.ack, ("seq",)),
    "logout": Route(accounts.logout),
    "devices": Route(accounts.devices),
    "revoke_device": Route(accounts.revoke_device, ("device_id",)),
    "upload_begin": Route(blob_requests.upload_begin, ("blob_id", "size")),
    "upload_chunk": Route(blob_requests.upload_chunk, ("blob_id", "offset", "data")),
    "upload_finish": Route(blob_requests.upload_finish, ("blob_id",)),
    "download": Route(blob_requests.download, ("blob_id", "offset", "length")),
    "call_start": Route(calls.call_start, ("conversation",)),
    "call_join": Route(calls.call_join, ("call_id",)),
    "call_leave": Route(calls.call_leave, ("call_id",)),
    "call_end": Route(calls.call_end, ("call_id",)),
    "call_list": Route(calls.call_list),
    "call_signal": Route(calls.call_signal, ("call_id", "envelopes")),
    "profile_set": Route(profiles.profile_set, ("name", "about", "avatar")),
    "profile_get": Route(profiles.profile_get, ("account",)),
    "status_post": Route(profiles.status_post, ("text",)),
    "status_list": Route(profiles.status_list),
    **social_routes.ROUTES,
}
"""Requests of a logged-in device (with those about the other transport,
:mod:`server.federation.social_routes`)."""

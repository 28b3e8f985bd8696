"""Everything a relay client may ask: request type -> handler and the fields it reads.

Two tables, before and after authentication; a type in neither is ``unsupported``. The fuzz
tests draw their requests from these tables, so a route added here is fuzzed too.
"""

from __future__ import annotations

from ..common import blob_requests
from ..common.requests import Route, RouteTable
from ..federation import relay_routes
from . import accounts, blobs, calls, directory, groups, linking, messages

_GET_DEVICES = Route(directory.get_devices, ("account",))
_PING = Route(messages.ping)

PUBLIC_ROUTES: RouteTable = {
    "register": Route(accounts.register, ("account", "account_key", "device_list",
                                          "device_list_signature", "signature")),
    "auth": Route(accounts.auth, ("account", "device_id", "signature")),
    "ping": _PING,
    "get_devices": _GET_DEVICES,
    "link_request": Route(linking.link_request, (
        "account", "lookup", "tag", "name", "identity_key", "link_signature", "signed_prekey",
        "one_time_prekeys")),
}
"""Requests before authentication."""

AUTHENTICATED_ROUTES: RouteTable = {
    "publish_prekeys": Route(directory.publish_prekeys, ("signed_prekey", "one_time_prekeys",
                                                         "link_signature")),
    "get_devices": _GET_DEVICES,
    "fetch_bundles": Route(directory.fetch_bundles, ("account", "device_ids")),
    "send": Route(messages.send, ("to", "envelopes", "blobs")),
    "ack": Route(messages.ack, ("seqs",)),
    "ping": _PING,
    "get_link": Route(linking.get_link, ("lookup",)),
    "update_devices": Route(linking.update_devices, (
        "device_list", "device_list_signature", "link")),
    "group_put": Route(groups.group_put, ("routing", "signature")),
    "group_send": Route(groups.group_send, ("group_id", "version", "devices_digest", "message",
                                            "blobs")),
    "group_deliver": Route(groups.group_deliver, ("group_id", "envelopes")),
    "upload_begin": Route(blob_requests.upload_begin, ("blob_id", "size")),
    "upload_chunk": Route(blob_requests.upload_chunk, ("blob_id", "offset", "data")),
    "upload_finish": Route(blob_requests.upload_finish, ("blob_id",)),
    "download": Route(blob_requests.download, ("blob_id", "offset", "length")),
    "download_done": Route(blobs.download_done, ("blob_id",)),
    "call_start": Route(calls.call_start, ("to", "group_id")),
    "call_join": Route(calls.call_join, ("call_id",)),
    "call_leave": Route(calls.call_leave, ("call_id",)),
    "call_end": Route(calls.call_end, ("call_id",)),
    "call_list": Route(calls.call_list),
    "call_signal": Route(calls.call_signal, ("call_id", "envelopes")),
    **relay_routes.ROUTES,
}
"""Requests of an authenticated device (with those about the other transport,
:mod:`server.federation.relay_routes`)."""

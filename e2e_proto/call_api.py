"""The vocabulary of calls on both signalling servers (docs/PROTOCOL.md §18.2).

The relay and the social server take the same call requests on their own connections and
refuse them with the same codes; only who may start or join a call differs (a device of an
account, a member of a group or conversation).
"""

from __future__ import annotations

# Requests.
CALL_START = "call_start"
CALL_JOIN = "call_join"
CALL_LEAVE = "call_leave"
CALL_END = "call_end"
CALL_LIST = "call_list"
CALL_SIGNAL = "call_signal"  # pairwise envelopes (the call_key payload) to participant devices

# Pushes (frames without ``id``).
CALL_RING = "call_ring"
CALL_JOINED = "call_joined"
CALL_LEFT = "call_left"
CALL_ENDED = "call_ended"
CALL_KEYS = "call_keys"  # a server-keyed call's current keys (social, not end to end)
PUSHES = frozenset({CALL_RING, CALL_JOINED, CALL_LEFT, CALL_ENDED, CALL_KEYS, CALL_SIGNAL})

# Error codes (``error.code``), besides each server's own (bad_request, unknown_account, ...).
UNKNOWN_CALL = "unknown_call"
CALL_FULL = "call_full"  # the transport's participant cap (the error's ``limit``) is reached
NOT_INVITED = "not_invited"
NOT_PARTICIPANT = "not_participant"
TOO_MANY_CALLS = "too_many_calls"
CALLS_UNAVAILABLE = "calls_unavailable"  # the server has no forwarding unit

# Why a participant left (``call_left``'s ``reason``).
LEFT = "left"
GONE = "gone"  # its connection ended without a leave

MAX_CALL_SIGNAL_BYTES = 8 * 1024
"""The largest envelope a ``call_signal`` request may carry."""

"""The daemon's limits, in one dataclass: every bound a client or the queue meets is named here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Limits of ``e2e-chat daemon`` (defaults documented in docs/JSONRPC.md)."""

    max_line_bytes: int = 1 << 20
    """The longest request line, in bytes: a longer one gets -32000 and the connection closes."""
    max_batch: int = 100
    """The most requests in one batch."""
    requests_per_second: float = 200.0
    """Each client's request rate (a token bucket); a request beyond it gets -32001."""
    request_burst: int = 400
    """Each client's request burst."""
    max_clients: int = 64
    """Clients connected at once over all RPC transports; one more is told -32003 and closed."""
    calls_per_client: int = 16
    """Calls of one client running at once; its further lines wait to be read."""
    send_buffer: int = 1024
    """Answers and events waiting to be written to one client; a client that lets more pile
    up (it does not read) is cut off."""
    write_timeout: float = 10.0
    """Seconds a write to a client may block (it does not read) before the client is cut off."""
    auth_timeout: float = 10.0
    """Seconds a TCP client has to call ``auth`` before it is closed."""
    max_queued_events: int = 10_000
    """Events kept for subscribers until acknowledged. At this many the daemon stops taking
    messages from the servers (they wait there, under the server's TTL and quota) until
    subscribers acknowledge down to ``resume_queued_events``."""
    resume_queued_events: int = 9_000
    """The queue length at which taking messages from the servers resumes after it was full."""
    subscription_window: int = 100
    """Events a subscription is sent ahead of its acknowledgements."""
    kept_keys: int = 10_000
    """Keys of acknowledged events remembered, so a message shown again (after a crash) is not
    queued twice."""
    reconnect_start: float = 0.5
    """Seconds before reconnecting to a server after a loss; doubles up to ``reconnect_max``."""
    reconnect_max: float = 10.0
    """The longest wait between reconnection attempts, in seconds."""
    max_http_body: int = 1 << 20
    """The largest HTTP request body, in bytes."""
    max_calls: int = 4
    """Calls one account of the daemon takes part in at once (a server lets an account start
    4 at once); one more is refused."""
    max_call_seconds: float = 3600.0
    """The longest a call runs in the daemon, in seconds: the default (and largest) ``seconds``
    of ``call_start`` and ``call_join``."""
    call_connect_wait: float = 10.0
    """Seconds ``call_start`` and ``call_join`` wait for the daemon's connection to the server
    while it is (re)connecting: a call runs on it."""
    kept_call_reports: int = 16
    """Calls that are over whose outcome ``call_stats`` still reads (the newest, per account)."""

"""The client's own error: what both transports' clients and the CLI report to the user.

A :class:`ClientError` is a refusal or failure meant for a person, one line, no traceback; the
connection's own failures are :class:`~client.core.connection.ConnectionLost` and
:class:`~client.core.connection.ServerError`.
"""

from __future__ import annotations


class ClientError(Exception):
    """A failure to report to the user in one line (unknown user, not registered, ...)."""

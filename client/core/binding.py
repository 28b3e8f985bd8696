"""Where the client side's servers may listen: the business inbox, the daemon's TCP and HTTP.

Invariant: nothing is served on an address beyond loopback without TLS, since what crosses
those connections (agents' passwords, the daemon's bearer token, messages) would cross the
network in the clear.
"""

from __future__ import annotations

import ipaddress

from .errors import ClientError


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls: bool, server: str, remedy: str) -> None:
    """Refuse (:class:`ClientError`: "``server`` serves ``host`` only with TLS: ``remedy``") to
    serve a non-loopback address without TLS."""
    if not tls and not is_loopback(host):
        raise ClientError(f"{server} serves {host} only with TLS: {remedy}")

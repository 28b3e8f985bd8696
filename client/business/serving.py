"""Serving the inbox: Hypercorn's trio worker on one address, beside the business's lines.

The inbox binds to a loopback address unless it has a certificate: ``--http 0.0.0.0:...``
without ``--tls-cert``/``--tls-key`` is refused (:func:`client.core.binding.check_bind`), since
agents' passwords and customers' messages would cross the network in the clear. The ``Host``
names a request may carry are the bound address's (and ``localhost`` for a loopback one) plus
any given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import ASGIApp

from ..core.binding import is_loopback

log = logging.getLogger("e2e.business")


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The ``Host`` names accepted when bound to ``host``."""
    names = [host.lower()]
    if is_loopback(host):
        names += ["localhost", "127.0.0.1", "::1"]
    return tuple(dict.fromkeys([*names, *(name.lower() for name in extra)]))


def hypercorn_config(host: str, port: int, certfile: str | None = None,
                     keyfile: str | None = None) -> Config:
    """Hypercorn's settings for the inbox: one address, TLS when given, no access log."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0
    config.include_server_header = False
    if certfile is not None:
        config.certfile, config.keyfile = certfile, keyfile
    return config


async def serve_http(app: ASGIApp, config: Config,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; the bound port goes to ``task_status``."""
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        task_status.started(int(binds[0].rsplit(":", 1)[1]))

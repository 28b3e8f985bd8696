"""A bot that answers every message with the same text: e2e-chat's daemon, standard library only.

    e2e-chat --home ~/.e2e-bot daemon &          # the account's daemon (registered before)
    python examples/echo_bot.py --home ~/.e2e-bot

It subscribes on HOME/daemon.sock, answers each incoming ``message`` (a group's in the group, a
file's with its caption) and then acknowledges it, so a message that arrived while the bot was
down (or that it was handling when it died) is answered when it comes back: at least once, never
lost (docs/JSONRPC.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path


class Daemon:
    """A JSON-RPC connection to the daemon: calls, and the notifications that arrive between."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.lines = self.sock.makefile("rb")
        self.ids = itertools.count(1)
        self.pending: list[dict] = []

    def call(self, method: str, **params: object) -> object:
        """Call ``method`` and wait for its answer."""
        request_id = next(self.ids)
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                                      "params": params}).encode() + b"\n")
        while True:
            message = self.read()
            if message.get("id") == request_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(message["error"]["message"])
                return message["result"]
            self.pending.append(message)

    def read(self) -> dict:
        """The next message from the daemon."""
        line = self.lines.readline()
        if not line:
            raise SystemExit("the daemon closed the connection")
        return json.loads(line)

    def events(self) -> Iterator[dict]:
        """Every notification, forever."""
        while True:
            yield self.pending.pop(0) if self.pending else self.read()


def main() -> None:
    """Answer every message until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path,
                        default=Path(os.environ.get("E2E_HOME", "~/.e2e-chat")).expanduser())
    home = parser.parse_args().home
    daemon = Daemon(home / "daemon.sock")
    daemon.call("subscribe")
    print("echo bot: answering every message; Ctrl-C stops", file=sys.stderr, flush=True)
    for event in daemon.events():
        params = event.get("params", {})
        if event.get("method") == "message" and params.get("text") is not None:
            if params.get("group"):  # a private group's message: answered in the group
                daemon.call("group_send", name=params["group"], text=params["text"],
                            transport=params["transport"])
            else:
                to = params.get("conversation") or params["from"]  # social: group or account
                daemon.call("send", name=to, text=params["text"], transport=params["transport"])
        if "event_id" in params:
            daemon.call("ack", ids=[params["event_id"]])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

"""The README's demo: a real relay process and two CLI clients, alice and bob, talking.

``python -m client.cli.demo`` starts ``e2e-relay`` on a free local port with a database in a
temporary folder, registers alice and bob in separate homes with ``e2e-chat``, and runs the
commands a person would type, printing each command and its output. Everything is removed at
the end.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "client.cli.main"]
RELAY = [sys.executable, "-m", "server.relay.main"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, relay: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise SystemExit("demo: the relay exited at start")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling a child process's port: there is no event to wait on
    raise SystemExit("demo: the relay did not start")


def main() -> int:
    """Run the demo; returns 0 when every step behaved as expected."""
    with tempfile.TemporaryDirectory(prefix="e2e-demo-") as folder:
        root = Path(folder)
        port = _free_port()
        env = {**os.environ, "E2E_RELAY": f"127.0.0.1:{port}"}
        print(f"$ e2e-relay serve --listen 127.0.0.1:{port} --db {root / 'relay.db'} &")
        log = open(root / "relay.log", "wb")  # closed in the finally below
        relay = subprocess.Popen([*RELAY, "serve", "--listen", f"127.0.0.1:{port}", "--db",
                                  str(root / "relay.db")], stderr=log, env=env)
        try:
            _wait_for_port(port, relay)

            def chat(home: str, *args: str, expect_ok: bool = True) -> str:
                shown = " ".join(shlex.quote(a) for a in args)
                print(f"\n[{home}]$ e2e-chat {shown}")
                done = subprocess.run([*CLI, "--home", str(root / home), *args], env=env,
                                      capture_output=True, text=True)
                output = (done.stdout + done.stderr).rstrip()
                if output:
                    print("   " + output.replace("\n", "\n   "))
                if (done.returncode == 0) != expect_ok:
                    raise SystemExit(f"demo: unexpected exit status {done.returncode}")
                return done.stdout

            chat("alice", "register", "alice")
            chat("bob", "register", "bob")
            chat("carol", "register", "bob", expect_ok=False)
            chat("alice", "send", "bob", "Hi Bob! This is end-to-end encrypted.")
            chat("alice", "send", "bob", "The relay only ever sees ciphertext.")
            chat("bob", "recv")
            chat("bob", "send", "alice", "Hi Alice, got both.")
            chat("alice", "recv", "--json")
            chat("alice", "verify", "bob")
            chat("bob", "verify", "alice")
            chat("alice", "send", "nobody", "hello?", expect_ok=False)
            secret = b"The relay only ever sees ciphertext."
            leaked = [p.name for p in root.glob("relay.db*") if secret in p.read_bytes()]
            print(f"\nplaintext found in the relay's database files: {leaked or 'none'}")
        finally:
            relay.terminate()
            relay.wait()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The e2e-proto client: a trio client library for the relay and the ``e2e-chat`` CLI."""

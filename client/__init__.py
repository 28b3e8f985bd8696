"""The e2e-proto clients, on trio: ``core/`` (what both transports share: the connection, the
home folder's SQLite state, the user-facing error), ``private/`` (the relay's client),
``social/`` (the social server's client) and ``cli/`` (``e2e-chat``)."""

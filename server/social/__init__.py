"""``e2e-social``: the plaintext-capable social server (accounts, conversations, history and
search, reactions, pins, secret conversations), its handlers and its store."""

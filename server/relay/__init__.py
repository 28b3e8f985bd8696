"""``e2e-relay``: the ciphertext-only relay (authentication, prekey directory, device lists,
mailboxes), its request handlers, its store interface and the SQLite store."""

"""The servers: the ciphertext-only relay (``e2e-relay``)."""

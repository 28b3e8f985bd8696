"""e2e_proto: the sans-IO core of e2e-proto (X3DH, Double Ratchet, sessions, wire codecs).

Bytes in, bytes and typed results out: no sockets, no clock, and randomness only from a source
the caller can hand in. See docs/PROTOCOL.md for the wire and crypto specification.
"""

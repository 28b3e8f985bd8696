"""Calls on the servers: the forwarding unit (``e2e-sfu``), the call registry both signalling
servers keep, and the shared key file (DESIGN §15, docs/PROTOCOL.md §18)."""

"""Pure pieces the servers and the clients share, beside the sans-IO protocol (``e2e_proto``)
and the SQLite helpers (``storage``): rate limits on trio's clock (``rate_limits.py``) and what
a store keeps of a session token (``tokens.py``)."""

"""What both servers share as code, never as state: framing connections, request tables,
serving, request fields and the storage base (their rate limits are in :mod:`shared`)."""

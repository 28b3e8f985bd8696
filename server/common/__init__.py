"""What both servers share as code, never as state: framing connections, request tables,
rate limits, serving, request fields and the storage base."""

"""``e2e-chat daemon``: the home's accounts served to bots and scripts over JSON-RPC 2.0
(docs/JSONRPC.md), and the command line's client mode while it runs."""

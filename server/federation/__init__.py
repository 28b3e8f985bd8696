"""Between the two servers: the authenticated server-to-server link, account links with their
allow-listed sharing, and end-to-end encrypted chats across the transports (DESIGN §16)."""

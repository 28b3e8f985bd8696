"""What both transports' clients share: the connection to a server, the home folder's SQLite
state (with the protocol store's tables) and the error shown to the user."""

"""I/O helpers shared by the servers and the clients (SQLite files); no protocol logic."""

"""The "Acme Bank" demo: a small SQLite banking backend and the flow actions that use it."""

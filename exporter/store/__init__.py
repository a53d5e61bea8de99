"""Durable state: the SQLite checkpoint and its row codec."""

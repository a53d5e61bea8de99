"""A real Letta 0.16.8 server (Postgres + pgvector, Redis, a scripted LLM) for tests.

``python -m tests.realserver`` starts it by hand; ``tests/test_realserver_*.py`` use the
session fixture ``letta_stack`` (``tests/realserver/plugin.py``).
"""

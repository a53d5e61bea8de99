"""Talking to Letta each cycle: discovery, following, enrichment, commit."""

"""A simulated Letta 0.16.8 server for `letta-exporter demo`: agents at work, no Letta needed.

It imports nothing of the exporter, so the exporter reads it as it reads a real server.
"""

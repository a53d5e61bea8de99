"""The `letta-exporter` command: flags, wiring, `serve` and `check`."""

"""The published snapshot, its Prometheus rendering and the metrics reference."""

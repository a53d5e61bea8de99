"""The metric catalogue, aggregates, the published snapshot and its Prometheus rendering."""

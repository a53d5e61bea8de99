"""A run's life in the exporter: its record, the table of records, the lifecycle rules
(the run book), impossible states and error types."""

"""One run as the exporter knows it: its record, error type, impossible states and what
its trace is made of. Data and the rules that read one run only."""

"""Runs as OpenTelemetry spans: built or passed through, encoded, queued and shipped."""

"""The run book: the lifecycle rules (first sight, settle, count, forget) over the table
of run records."""

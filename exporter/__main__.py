"""`python -m exporter` is the same as the `letta-exporter` command."""

from exporter.cli import main

raise SystemExit(main())

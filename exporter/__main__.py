"""`python -m exporter` is the same as the `letta-exporter` command."""

from exporter.cli.main import main

raise SystemExit(main())

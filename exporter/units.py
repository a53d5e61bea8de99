"""The exporter's time unit: epoch nanoseconds, as Letta's run_ns and OTel use."""

from typing import Final

NS_PER_S: Final = 1_000_000_000

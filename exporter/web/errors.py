"""The one error a web config file can raise, and the phrases its file faults use."""

from __future__ import annotations

from pathlib import Path
from typing import Final

FLAG: Final = "--web.config.file"


class WebConfigError(Exception):
    """The web config file is unusable; str() is one sentence naming the file and field."""

    def __init__(self, path: Path, where: str, message: str) -> None:
        self.path = path
        self.where = where
        self.message = message
        location = f"{where}: " if where else ""
        super().__init__(f"invalid {FLAG} ({path}): {location}{message}")


def os_reason(exc: OSError) -> str:
    """Why a file could not be read, in a few words."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return exc.strerror or str(exc)

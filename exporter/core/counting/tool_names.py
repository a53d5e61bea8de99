"""Tool names by id, learnt from `/v1/tools/{id}` and kept in the state file."""

from __future__ import annotations


class ToolNames:
    """The id → name cache; an id that cannot be resolved names itself."""

    def __init__(self, known: dict[str, str] | None = None) -> None:
        self._names: dict[str, str] = dict(known or {})
        self._new: dict[str, str] = {}

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._names

    def get(self, tool_id: str) -> str:
        """The tool's name, or its id while the name is not known."""
        return self._names.get(tool_id, tool_id)

    def name(self, tool_id: str, name: str) -> None:
        """Remember a tool's name (the id itself when it cannot be resolved)."""
        self._names[tool_id] = name
        self._new[tool_id] = name

    def take_changes(self) -> dict[str, str]:
        """Names learnt since the last call (for the checkpoint)."""
        new, self._new = self._new, {}
        return new

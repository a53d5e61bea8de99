"""Agent names for `letta_agent_info`, read from the agents list.

The runs API carries agent ids only, and nobody knows agents by id. Names are read from
`GET /v1/agents/` every few minutes, and soon after a run names an agent the last read
did not have (a new agent). An agent missing from the list (deleted, or beyond the page
cap) keeps no name; dashboards then show its id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaError

log = logging.getLogger(__name__)

PAGE: Final = 100
MAX_PAGES: Final = 100  # 10,000 agents; the agent label cap is far below by default
REFRESH_S: Final = 300.0
# After a new agent id appears: soon, but not once per cycle while agents keep appearing.
UNKNOWN_REFRESH_S: Final = 30.0
_MAX_NAME: Final = 128


class AgentNames:
    """The name of each agent the agents list holds, refreshed on a schedule."""

    def __init__(
        self,
        client: LettaClient,
        *,
        unknown_refresh_s: float = UNKNOWN_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self._unknown_refresh_s = unknown_refresh_s
        self._clock = clock
        self._names: dict[str, str] = {}
        self._read_at: float | None = None
        self._known_at_read: frozenset[str] = frozenset()
        self._last_error: str | None = None

    def due(self, agent_ids: Iterable[str]) -> bool:
        """Whether a read is due: on schedule, or an agent id appeared since the last one."""
        if self._read_at is None:
            return True
        age = self._clock() - self._read_at
        if age >= REFRESH_S:
            return True
        if age < self._unknown_refresh_s:
            return False
        return any(a not in self._known_at_read for a in agent_ids)

    async def refresh(self, agent_ids: Iterable[str]) -> None:
        """Read every page of the agents list; on failure keep the names there are."""
        wanted = frozenset(agent_ids)
        names: dict[str, str] = {}
        after: str | None = None
        try:
            for _ in range(MAX_PAGES):
                page = await self._client.list_agents(limit=PAGE, after=after)
                fresh = [agent for agent in page if agent.id not in names]
                for agent in fresh:
                    names[agent.id] = _label_value(agent.name)
                if len(page) < PAGE or not fresh:
                    break
                after = page[-1].id
            else:
                log.warning(
                    "agents list: stopped after %d pages; agents beyond show their id",
                    MAX_PAGES,
                )
        except LettaError as exc:
            self._read_at = self._clock()  # retried on schedule, not every cycle
            if str(exc) != self._last_error:
                log.warning("cannot read agent names (%s); keeping the last ones", exc)
                self._last_error = str(exc)
            return
        self._last_error = None
        self._names = names
        self._read_at = self._clock()
        self._known_at_read = wanted | names.keys()

    def info(self, agent_ids: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """(agent id, name) of the given agents that have a name."""
        return tuple((a, self._names[a]) for a in agent_ids if self._names.get(a))


def _label_value(name: str | None) -> str:
    """A name as a label value: printable, bounded; "" when there is none."""
    if not name:
        return ""
    return "".join(c if c.isprintable() else " " for c in name).strip()[:_MAX_NAME]

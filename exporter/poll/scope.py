"""Whether Letta honours the project the exporter asks for, judged from the steps it reads.

Runs carry no project (0.16.8 and letta-client's `Run` alike), so a list answered for
the wrong project looks exactly like a right one. Steps do carry `project_id` on Letta
Cloud (letta-client's `Step`: "the project that the agent that executed this step belongs
to"), and the exporter reads every finished run's steps anyway: a step of another
project proves that the server ignored `X-Project-Id`, and steps of the configured
project prove that it scoped. Nothing is asked for the check itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from exporter.letta.models import Step

log = logging.getLogger(__name__)


class ScopeCheck:
    """Verdict on the project scope: None when no project is set, else verified or not.

    With only the deprecated slug (`--letta.project`), the first project id seen stands
    for the slug, and a second one shows that the scope is not applied.
    """

    def __init__(self, project_id: str | None, project: str | None) -> None:
        self._scoped = project_id is not None or project is not None
        self._expected = project_id
        self._verified = False
        self._ignored = False
        self._told_unknown = False

    @property
    def verified(self) -> bool | None:
        """None unscoped; True once steps of the project (and of no other) were seen."""
        return self._verified if self._scoped else None

    def observe(self, steps: Iterable[Step]) -> None:
        """Judge the scope by the `project_id` of one run's steps."""
        if not self._scoped or self._ignored:
            return
        seen_any = False
        for step in steps:
            seen_any = True
            if step.project_id is None:
                continue
            if self._expected is None:
                self._expected = step.project_id
            if step.project_id != self._expected:
                self._ignored = True
                self._verified = False
                log.warning(
                    "Letta returned a run whose steps belong to project %s while this "
                    "exporter is scoped to %s: the server ignores the project header, so "
                    "runs of other projects are counted here too "
                    "(letta_exporter_scope_verified 0)",
                    step.project_id,
                    self._expected,
                )
                return
            if not self._verified:
                log.info("project scope verified: Letta's steps belong to %s", self._expected)
            self._verified = True
        if seen_any and not self._verified and not self._told_unknown:
            self._told_unknown = True
            log.info(
                "Letta's steps carry no project_id: the project scope cannot be verified "
                "(letta_exporter_scope_verified stays 0)"
            )

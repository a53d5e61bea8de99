"""Letta Cloud: the real exporter against the fake's Cloud profile.

The profile is what Cloud is assumed to do (its server is not public): Bearer API key,
runs and steps scoped by `X-Project-Id`, `project_id` on steps, order-relative cursors.
One project is counted exactly (runs and tokens) while another project's runs appear;
no request goes out without the project header; a server that ignores the header is
reported; a rotated key file is followed without a restart.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import httpx
import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running, wait_polls

pytestmark = pytest.mark.e2e

KEY = "sk-let-cloud-test-key"
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]


def cloud_fake() -> FakeLetta:
    return FakeLetta(semantics="relative", password=KEY, cloud=True)


def finish_run(fake: FakeLetta, project: str, agent: str, rng: random.Random) -> str:
    run_id = fake.create_run(agent, project_id=project)
    fake.update_run(run_id, status="running")
    for _ in range(rng.randrange(1, 4)):
        fake.add_step(
            run_id,
            model=rng.choice(MODELS),
            prompt_tokens=rng.randrange(100, 2000),
            completion_tokens=rng.randrange(1, 200),
        )
    status, reason = rng.choice([("completed", "end_turn"), ("failed", "llm_api_error")])
    fake.update_run(run_id, status=status, stop_reason=reason)
    return run_id


def test_the_profile_wants_a_bearer_key_and_scopes_runs_and_steps_by_project() -> None:
    with cloud_fake() as fake:
        mine = fake.create_run("agent-a", project_id="proj-a")
        step = fake.add_step(mine, prompt_tokens=5)
        other = fake.create_run("agent-b", project_id="proj-b")
        auth = {"Authorization": f"Bearer {KEY}"}
        runs = f"{fake.base_url}/v1/runs/"
        assert httpx.get(runs).status_code == 401
        assert httpx.get(runs, headers={"X-BARE-PASSWORD": f"password {KEY}"}).status_code == 401
        scoped = {**auth, "X-Project-Id": "proj-a"}
        assert [r["id"] for r in httpx.get(runs, headers=scoped).json()] == [mine]
        assert {r["id"] for r in httpx.get(runs, headers=auth).json()} == {mine, other}
        assert httpx.get(f"{runs}{other}", headers=scoped).status_code == 404
        steps = httpx.get(f"{runs}{mine}/steps", headers=scoped).json()
        assert [(s["id"], s["project_id"]) for s in steps] == [(step, "proj-a")]
        assert fake.project_headers == [None, None, "proj-a", None, "proj-a", "proj-a"]


def test_one_project_is_counted_exactly_while_another_creates_runs(tmp_path: Path) -> None:
    rng = random.Random(15)
    with cloud_fake() as fake:
        env = {"LETTA_API_KEY": KEY, "LETTA_PROJECT_ID": "proj-a"}
        exporter = Exporter(fake.base_url, tmp_path / "s.sqlite", "--letta.page-size=4", env=env)
        with running(exporter) as exp:
            exp.wait_ready()
            stop = threading.Event()

            def other_project() -> None:
                other_rng = random.Random(16)
                for _ in range(300):  # bounded, however slow the machine
                    if stop.wait(0.01):
                        return
                    finish_run(fake, "proj-b", f"agent-b{other_rng.randrange(3)}", other_rng)

            neighbour = threading.Thread(target=other_project, daemon=True)
            neighbour.start()
            try:
                for i in range(30):
                    finish_run(fake, "proj-a", f"agent-a{i % 3}", rng)
                exp.wait_for(
                    lambda: exp.finished() == expected(fake.truth("proj-a")),
                    what="proj-a's totals",
                )
                exp.wait_for(
                    lambda: exp.tokens() == fake.token_truth("proj-a"),
                    what="proj-a's tokens",
                )
            finally:
                stop.set()
                neighbour.join(10)
            wait_polls(exp, 3)
            # 0 lost, 0 doubled, nothing of proj-b; the scope was seen to hold.
            assert exp.finished() == expected(fake.truth("proj-a"))
            assert exp.tokens() == fake.token_truth("proj-a")
            assert fake.truth("proj-b") and not set(fake.truth("proj-b")) & set(
                fake.truth("proj-a")
            )
            assert exp.value("letta_exporter_scope_verified") == 1
            assert exp.value("letta_up") == 1
        headers = fake.project_headers
        assert headers and set(headers) == {"proj-a"}, "a request went out without the project"


def test_a_server_that_ignores_the_project_header_is_reported(tmp_path: Path) -> None:
    rng = random.Random(17)
    with cloud_fake() as fake:
        fake.honour_project_header = False
        env = {"LETTA_API_KEY": KEY, "LETTA_PROJECT_ID": "proj-a"}
        with exporter_on(fake.base_url, tmp_path, env=env) as exp:
            assert exp.value("letta_exporter_scope_verified") == 0
            for project in ("proj-a", "proj-b", "proj-a", "proj-b"):
                finish_run(fake, project, "agent-x", rng)
            # Both projects are counted (the server did not scope), and it is said once.
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="all counted")
            wait_polls(exp, 3)
            assert exp.value("letta_exporter_scope_verified") == 0
            warnings = [line for line in exp.logs if "ignores the project header" in line]
            assert len(warnings) == 1


def test_a_rotated_key_file_recovers_without_a_restart_and_loses_no_run(tmp_path: Path) -> None:
    rng = random.Random(18)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    with cloud_fake() as fake:
        env = {"LETTA_API_KEY_FILE": str(key_file), "LETTA_PROJECT_ID": "proj-a"}
        with exporter_on(fake.base_url, tmp_path, env=env) as exp:
            finish_run(fake, "proj-a", "agent-a", rng)
            exp.wait_for(lambda: exp.finished() == expected(fake.truth("proj-a")))
            # The key is rotated on the server before the file follows: polls fail with
            # 401, said once, not once per cycle.
            fake.password = "sk-let-rotated-key"
            errors = exp.value("letta_exporter_poll_errors_total", reason="auth")
            exp.wait_for(
                lambda: exp.value("letta_exporter_poll_errors_total", reason="auth") >= errors + 3,
                what="three failed polls",
            )
            assert exp.value("letta_up") == 0
            for _ in range(3):
                finish_run(fake, "proj-a", "agent-a", rng)
            key_file.write_text("sk-let-rotated-key\n")
            exp.wait_for(lambda: exp.value("letta_up") == 1, what="recovery")
            exp.wait_for(lambda: exp.finished() == expected(fake.truth("proj-a")))
            wait_polls(exp, 3)
            assert exp.finished() == expected(fake.truth("proj-a"))
            rejected = [line for line in exp.logs if "rejected the credentials" in line]
            assert len(rejected) == 1
            assert any("changed: using the new key" in line for line in exp.logs)
            assert not any("sk-let-rotated-key" in line or KEY in line for line in exp.logs)

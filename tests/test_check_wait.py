"""`letta-exporter check --wait`: a CI job waits for its runs as with `lettactl track`."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from exporter.cli.check_wait import FIRST_PAUSE_S, MAX_PAUSE_S, pauses
from tests.fake_letta.fake import FakeLetta
from tests.harness import CHECK_ARGV, check, poll_until


@contextmanager
def checking(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`check` running in the background; killed if the test leaves it running."""
    proc = subprocess.Popen(
        [*CHECK_ARGV, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout, stderr


def reads_of(fake: FakeLetta, run_id: str) -> int:
    return sum(1 for r in fake.requests if r[0] == "GET" and r[1] == f"/v1/runs/{run_id}")


def wait_polled(fake: FakeLetta, run_id: str, times: int = 2) -> None:
    """Until `check` has read the run `times` times (twice: it is waiting, not judging
    once). The pause between reads grows, so each read asked for costs more time."""
    polled = poll_until(lambda: reads_of(fake, run_id) >= times, 30, interval=0.05)
    assert polled, f"check never polled {run_id}"


def test_a_run_that_ends_while_waited_for_exits_0_with_the_table() -> None:
    with FakeLetta() as fake:
        run_id = fake.create_run("agent-a")
        with checking(f"--letta.url={fake.base_url}", f"--run={run_id}", "--wait") as proc:
            wait_polled(fake, run_id)
            fake.update_run(run_id, status="running")
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
            code, stdout, stderr = finish(proc)
    assert code == 0, stderr
    assert f"waiting for 1 run (gives up in 10m00s): {run_id} created for" in stderr
    assert f"{run_id} ended: completed (end_turn) after" in stderr
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["AGENT", "STATUS", "STOP_REASON", "RUNS"]
    assert lines[1].split()[:4] == ["agent-a", "completed", "end_turn", "1"]
    assert lines[-1] == "1 runs waited for, 0 failed"


def test_an_agents_open_runs_are_waited_for_and_a_failure_exits_1() -> None:
    with FakeLetta() as fake:
        done = fake.create_run("agent-a", status="completed")  # ended before: not waited for
        first = fake.create_run("agent-a")
        second = fake.create_run("agent-a", status="running")
        other = fake.create_run("agent-b")  # another agent's run: never ends, not waited for
        with checking(
            f"--letta.url={fake.base_url}", "--agent=agent-a", "--wait", "--output=json"
        ) as proc:
            wait_polled(fake, first)
            fake.update_run(first, status="completed", stop_reason="end_turn")
            # Read again after the first ended: still waiting for the second.
            wait_polled(fake, second, times=reads_of(fake, second) + 1)
            # Letta can mark a run completed with a failing stop reason: still a failure.
            fake.update_run(second, status="completed", stop_reason="llm_api_error")
            code, stdout, stderr = finish(proc)
    assert code == 1, stderr
    summary = json.loads(stdout)
    assert (summary["runs"], summary["failed_runs"]) == (2, 1)
    assert (summary["timed_out"], summary["still_open"], summary["deleted"]) == (False, [], [])
    by_id = {run["id"]: run for run in summary["waited_runs"]}
    assert set(by_id) == {first, second}
    assert done not in by_id and other not in by_id
    assert (by_id[second]["stop_reason"], by_id[second]["failed"]) == ("llm_api_error", True)
    assert by_id[first]["failed"] is False and by_id[first]["ended"] is True


def test_a_run_still_open_at_the_timeout_exits_2() -> None:
    with FakeLetta() as fake:
        ended = fake.create_run("agent-a", status="failed")
        fake.update_run(ended, status="failed", stop_reason="error")
        stuck = fake.create_run("agent-a", status="running")
        result = check(
            f"--letta.url={fake.base_url}",
            f"--run={ended}",
            f"--run={stuck}",
            "--wait",
            "--timeout=1s",
        )
    # A timeout outranks the failure: the verdict is incomplete.
    assert result.returncode == 2, result.stderr
    assert f"gave up after 1s (--timeout); still open: {stuck}" in result.stderr
    assert result.stdout.splitlines()[-1] == "2 runs waited for, 1 failed, 1 still open"


def test_a_run_deleted_while_waited_for_exits_2() -> None:
    with FakeLetta() as fake:
        run_id = fake.create_run("agent-a")
        args = (f"--letta.url={fake.base_url}", f"--run={run_id}", "--wait", "--output=json")
        with checking(*args) as proc:
            wait_polled(fake, run_id)
            fake.delete_run(run_id)
            code, stdout, stderr = finish(proc)
    assert code == 2, stderr
    assert f"{run_id} was deleted while waited for" in stderr
    summary = json.loads(stdout)
    assert (summary["deleted"], summary["runs"], summary["waited_runs"]) == ([run_id], 0, [])


def test_letta_failing_for_a_while_is_waited_out() -> None:
    with FakeLetta() as fake:
        run_id = fake.create_run("agent-a")
        with checking(f"--letta.url={fake.base_url}", f"--run={run_id}", "--wait") as proc:
            wait_polled(fake, run_id, times=1)
            fake.inject("503", times=2, path_prefix=f"/v1/runs/{run_id}")
            failed_reads = [("GET", f"/v1/runs/{run_id}", 503)] * 2
            assert poll_until(
                lambda: [(r[0], r[1], r[3]) for r in fake.requests if r[3] == 503] == failed_reads,
                30,
                interval=0.05,
            )
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
            code, _, stderr = finish(proc)
    assert code == 0, stderr
    assert f"cannot read {run_id} now" in stderr


def test_an_unknown_run_or_bad_usage_exits_2_at_once() -> None:
    with FakeLetta() as fake:
        url = f"--letta.url={fake.base_url}"
        real = fake.create_run("agent-a")
        unknown = "run-00000000-0000-4000-8000-000000000000"
        result = check(url, f"--run={real}", f"--run={unknown}", "--wait")
        assert result.returncode == 2
        assert f"run {unknown} does not exist on {fake.base_url}" in result.stderr
        for args, says in [
            ((f"--run={real}",), "--run and --timeout go with --wait"),
            (("--wait",), "--wait needs --run ID or --agent ID"),
            ((f"--run={real}", "--wait", "--since=1h"), "--since judges a window"),
            ((f"--run={real}", "--wait", "--timeout=soon"), "invalid --timeout"),
        ]:
            result = check(url, *args)
            assert (result.returncode, result.stdout) == (2, ""), args
            assert says in result.stderr, result.stderr


def test_an_agent_without_open_runs_exits_0_at_once() -> None:
    with FakeLetta() as fake:
        fake.create_run("agent-a", status="completed")
        result = check(f"--letta.url={fake.base_url}", "--agent=agent-a", "--wait")
    assert result.returncode == 0, result.stderr
    assert "no open runs of agent-a" in result.stderr
    assert result.stdout.splitlines()[-1] == "0 runs waited for, 0 failed"


def test_polling_backs_off_to_a_few_seconds() -> None:
    first = list(itertools.islice(pauses(), 12))
    assert first[0] == FIRST_PAUSE_S
    assert first == sorted(first) and first[-1] == MAX_PAUSE_S == max(first)

"""The runs list under each cursor profile and backend (tests/fake_letta/cursors.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fake_checks import connect, fixture, ids_of, make_ten_rows, rows_for
from tests.fake_letta.constants import Backend, Semantics
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_pagination_walks_equal_summary(world_http: httpx.Client) -> None:
    summary = fixture("pagination/summary.json")
    assert ids_of(world_http.get("/v1/runs/", params={"limit": 1000})) == summary["all_ids_desc"]
    for name, walk in summary["walks"].items():
        assert len(walk["pages"]) == walk["n_requests"], name
        for page in walk["pages"]:
            got = ids_of(world_http.get("/v1/runs/", params=page["query"]))
            assert got == page["ids"], (name, page["query"])


def test_ten_row_example_letta_semantics(fake: FakeLetta, http: httpx.Client) -> None:
    rows = make_ten_rows(fake)
    assert rows_for(http, rows, order="asc", limit=3) == [0, 1, 2]
    assert rows_for(http, rows, order="asc", limit=3, after=2) == [0, 1]
    assert rows_for(http, rows, order="asc", limit=3, before=2) == [3, 4, 5]
    assert rows_for(http, rows, order="desc", limit=3) == [9, 8, 7]
    assert rows_for(http, rows, order="desc", limit=3, before=7) == [6, 5, 4]
    assert rows_for(http, rows, order="desc", limit=3, after=7) == [9, 8]
    # "after" starts from the head of the list, not next to the cursor
    assert rows_for(http, rows, order="asc", limit=3, after=7) == [0, 1, 2]
    # the probe of §4.3: [A, B] = asc limit 2, then asc&limit=1&after=A gives []
    assert rows_for(http, rows, order="asc", limit=1, after=0) == []
    assert rows_for(http, rows, order="asc", limit=1, before=0) == [1]
    # both cursors: both conditions apply
    assert rows_for(http, rows, order="asc", limit=10, before=2, after=7) == [3, 4, 5, 6]


def test_ten_row_example_conventional_semantics() -> None:
    with FakeLetta(semantics="conventional") as fake, connect(fake.base_url) as http:
        rows = make_ten_rows(fake)
        assert rows_for(http, rows, order="asc", limit=3) == [0, 1, 2]
        assert rows_for(http, rows, order="asc", limit=3, after=2) == [3, 4, 5]  # next page
        assert rows_for(http, rows, order="asc", limit=3, before=2) == [0, 1]
        assert rows_for(http, rows, order="desc", limit=3, before=7) == [6, 5, 4]  # next page
        assert rows_for(http, rows, order="desc", limit=3, after=7) == [9, 8]
        # previous pages are the rows adjacent to the cursor, not the head of the list
        assert rows_for(http, rows, order="asc", limit=3, before=7) == [4, 5, 6]
        assert rows_for(http, rows, order="desc", limit=3, after=2) == [5, 4, 3]
        assert rows_for(http, rows, order="asc", limit=10, after=2, before=7) == [3, 4, 5, 6]
        assert rows_for(http, rows, order="desc", limit=10, after=2, before=7) == [6, 5, 4, 3]
        # the probe of §4.3: [A, B] = asc limit 2, then asc&limit=1&after=A gives [B]
        assert rows_for(http, rows, order="asc", limit=1, after=0) == [1]


def test_desc_before_walk_is_semantics_proof() -> None:
    options: tuple[Semantics, ...] = ("letta-0.16.8", "conventional")
    for semantics in options:
        with FakeLetta(semantics=semantics) as fake, connect(fake.base_url) as http:
            rows = make_ten_rows(fake)
            walked: list[int] = []
            params: dict[str, Any] = {"order": "desc", "limit": 4}
            while page := rows_for(http, rows, **params):
                walked += page
                params["before"] = page[-1]
            assert walked == list(range(9, -1, -1)), semantics


def test_unknown_malformed_and_deleted_cursor_restart_from_head(
    fake: FakeLetta, http: httpx.Client
) -> None:
    rows = make_ten_rows(fake)
    head_desc = rows_for(http, rows, limit=3)
    head_asc = rows_for(http, rows, limit=3, order="asc")
    for cursor in ("run-00000000-0000-4000-8000-000000000000", "not-a-run-id"):
        for param in ("before", "after"):
            got = [
                rows.index(i)
                for i in ids_of(http.get("/v1/runs/", params={param: cursor, "limit": 3}))
            ]
            assert got == head_desc
    fake.delete_run(rows[5])
    restarted = ids_of(
        http.get("/v1/runs/", params={"order": "asc", "before": rows[5], "limit": 3})
    )
    assert [rows.index(i) for i in restarted] == head_asc  # silently restarted (§4.4)


def test_sqlite_backend_skips_and_repeats_within_the_cursor_second() -> None:
    second = 1_800_000_000
    layout = {
        "p2": second - 1 + 0.2,
        "p6": second - 1 + 0.6,
        "c1": second + 0.1,
        "c3": second + 0.3,
        "c5": second + 0.5,
        "c7": second + 0.7,
        "c9": second + 0.9,
        "n4": second + 1 + 0.4,
        "n8": second + 1 + 0.8,
    }
    results: dict[str, dict[str, list[str]]] = {}
    backends: tuple[Backend, ...] = ("postgres", "sqlite")
    for backend in backends:
        with FakeLetta(backend=backend) as fake, connect(fake.base_url) as http:
            names = {
                fake.create_run(created_at=ts, status="completed"): name
                for name, ts in layout.items()
            }
            cursor = next(run_id for run_id, name in names.items() if name == "c5")

            def names_of(**params: Any) -> list[str]:
                return [names[i] for i in ids_of(http.get("/v1/runs/", params=params))]  # noqa: B023

            results[backend] = {
                "desc_before": names_of(order="desc", before=cursor, limit=20),
                "asc_before": names_of(order="asc", before=cursor, limit=20),
                "created_at": [http.get("/v1/runs/", params={"limit": 1}).json()[0]["created_at"]],
            }
            # With `limit` or more runs in one second, asc + before=<last> never moves on.
            first = names_of(order="asc", limit=2)
            last = next(r for r, n in names.items() if n == first[-1])
            results[backend]["asc_next"] = names_of(order="asc", limit=2, before=last)
    pg, lite = results["postgres"], results["sqlite"]
    assert pg["desc_before"] == ["c3", "c1", "p6", "p2"]
    assert lite["desc_before"] == ["p6", "p2"]  # rows earlier in the cursor's second skipped
    assert pg["asc_before"] == ["c7", "c9", "n4", "n8"]
    assert lite["asc_before"] == ["c1", "c3", "c5", "c7", "c9", "n4", "n8"]  # whole second again
    assert pg["asc_next"] == ["c1", "c3"]
    assert lite["asc_next"] == ["p2", "p6"]  # the same page again: the loop of §4.5
    assert pg["created_at"][0].endswith("Z")
    assert not lite["created_at"][0].endswith("Z")  # SQLite returns naive timestamps


def test_relative_cursors_page_in_the_sort_order_and_404_on_unknown() -> None:
    with FakeLetta(semantics="relative") as fake:
        ids = [fake.create_run("agent-a", created_at=1_795_000_000 + i) for i in range(10)]
        newest_first = list(reversed(ids))
        with httpx.Client(base_url=fake.base_url) as client:

            def page(**params: Any) -> list[str]:
                body = client.get("/v1/runs/", params={"limit": 3, **params}).json()
                return [run["id"] for run in body]

            assert page(order="desc", after=newest_first[2]) == newest_first[3:6]
            assert page(order="desc", before=newest_first[5]) == newest_first[2:5]
            assert page(order="asc", after=ids[2]) == ids[3:6]
            assert page(order="asc", before=ids[5]) == ids[2:5]
            unknown = client.get(
                "/v1/runs/", params={"after": "run-00000000-0000-4000-8000-000000000000"}
            )
            assert unknown.status_code == 404


def test_unknown_cursors_can_restart_the_list_and_semantics_can_change_while_serving() -> None:
    with FakeLetta(semantics="relative", unknown_cursor="ignore") as fake:
        ids = [fake.create_run("agent-a", created_at=1_795_000_000 + i) for i in range(10)]
        newest_first = list(reversed(ids))
        with httpx.Client(base_url=fake.base_url) as client:

            def page(**params: Any) -> list[str]:
                body = client.get("/v1/runs/", params={"limit": 3, **params}).json()
                return [run["id"] for run in body]

            gone = "run-00000000-0000-4000-8000-000000000000"
            assert page(order="desc", after=gone) == newest_first[:3]  # from the head
            assert page(order="desc", before=newest_first[5]) == newest_first[2:5]
            fake.set_semantics("letta-0.16.8")
            assert page(order="desc", before=newest_first[5]) == newest_first[6:9]
            fake.set_semantics("relative")  # its default again: 404 on unknown cursors
            assert client.get("/v1/runs/", params={"after": gone}).status_code == 404

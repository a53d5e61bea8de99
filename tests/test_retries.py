"""Retries and pacing as letta-client 1.12 does them, on an injected clock: no real sleeps."""

from __future__ import annotations

import email.utils
from typing import Any

import httpx
import pytest
import respx

from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaNotFound,
    LettaNotImplemented,
    LettaPostponed,
    LettaRequestError,
    LettaUnavailable,
)
from exporter.letta.http import build_http_client
from exporter.letta.pacing import ADJUST_EVERY_S, FLOOR_PER_S, AdaptivePace
from exporter.letta.requester import ClientOptions
from tests.throttling import ThrottlingServer

letta_api = respx.MockRouter(using="httpx", assert_all_called=False)
BASE = "http://letta.test"
LIST = f"{BASE}/v1/runs/"


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def make_client(
    fake_time: FakeTime,
    *,
    rate_limit: float = 0.0,
    postponed: list[str] | None = None,
    **options: Any,
) -> LettaClient:
    opts = {"retries": 3, "retry_max_wait": 8.0, "total_deadline": 30.0}
    opts.update(options)
    seen = postponed if postponed is not None else []
    return LettaClient(
        build_http_client(BASE, api_key=None, user_id=None, timeout=1.0),
        ClientOptions(**opts),
        on_postponed=seen.append,
        rate_limit=rate_limit,
        clock=fake_time,
        sleep=fake_time.sleep,
    )


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
@letta_api
async def test_the_statuses_letta_client_retries_are_retried(status: int) -> None:
    route = letta_api.get(LIST).mock(
        side_effect=[httpx.Response(status), httpx.Response(200, json=[])]
    )
    fake_time = FakeTime()
    await make_client(fake_time).list_runs(limit=1)
    assert route.call_count == 2
    assert len(fake_time.sleeps) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, LettaRequestError),
        (404, LettaNotFound),
        (405, LettaNotImplemented),
        (422, LettaRequestError),
        (501, LettaNotImplemented),
    ],
)
@letta_api
async def test_other_statuses_are_not_retried(status: int, error: type[Exception]) -> None:
    route = letta_api.get(LIST).mock(return_value=httpx.Response(status))
    with pytest.raises(error):
        await make_client(FakeTime()).list_runs(limit=1)
    assert route.call_count == 1


@letta_api
async def test_a_409_lock_conflict_waits_its_retry_after_second() -> None:
    letta_api.get(LIST).mock(
        side_effect=[
            httpx.Response(409, headers={"Retry-After": "1"}, json={"detail": "locked"}),
            httpx.Response(200, json=[]),
        ]
    )
    fake_time = FakeTime()
    await make_client(fake_time).list_runs(limit=1)
    assert fake_time.sleeps == [1.0]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after-ms": "250", "Retry-After": "7"}, 0.25),  # the milliseconds win
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "12"}, 12.0),  # longer than the backoff cap, within the deadline
    ],
)
@letta_api
async def test_the_wait_the_server_asks_for_is_honoured(
    headers: dict[str, str], wait: float
) -> None:
    letta_api.get(LIST).mock(
        side_effect=[httpx.Response(429, headers=headers), httpx.Response(200, json=[])]
    )
    fake_time = FakeTime()
    await make_client(fake_time).list_runs(limit=1)
    assert fake_time.sleeps == [wait]


@letta_api
async def test_retry_after_as_an_http_date_is_read() -> None:
    import time

    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    letta_api.get(LIST).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": when}),
            httpx.Response(200, json=[]),
        ]
    )
    fake_time = FakeTime()
    await make_client(fake_time).list_runs(limit=1)
    assert len(fake_time.sleeps) == 1
    assert 3.0 <= fake_time.sleeps[0] <= 5.0  # whole seconds in the date, time passes


@letta_api
async def test_x_should_retry_false_is_obeyed() -> None:
    route = letta_api.get(LIST).mock(
        return_value=httpx.Response(503, headers={"x-should-retry": "false"})
    )
    with pytest.raises(LettaUnavailable):
        await make_client(FakeTime()).list_runs(limit=1)
    assert route.call_count == 1


@letta_api
async def test_x_should_retry_true_retries_any_status() -> None:
    route = letta_api.get(LIST).mock(
        side_effect=[
            httpx.Response(400, headers={"x-should-retry": "true"}),
            httpx.Response(200, json=[]),
        ]
    )
    await make_client(FakeTime()).list_runs(limit=1)
    assert route.call_count == 2


@letta_api
async def test_a_long_retry_after_postpones_the_work_and_says_so() -> None:
    route = letta_api.get(LIST).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "120"})
    )
    fake_time = FakeTime()
    postponed: list[str] = []
    client = make_client(fake_time, postponed=postponed)
    with pytest.raises(LettaPostponed) as info:
        await client.list_runs(limit=1)
    assert info.value.wait_s == 120.0
    assert route.call_count == 1 and fake_time.sleeps == []
    # Until then no request goes out at all: Letta asked for quiet.
    fake_time.now += 60
    with pytest.raises(LettaPostponed) as again:
        await client.get_run("run-1")
    assert again.value.wait_s == pytest.approx(60.0)
    assert route.call_count == 1
    assert postponed == ["runs_list", "run"]
    fake_time.now += 61
    route.mock(return_value=httpx.Response(200, json=[]))
    await client.list_runs(limit=1)
    assert route.call_count == 2


@letta_api
async def test_a_long_retry_after_on_a_409_postpones_only_that_request() -> None:
    letta_api.get(f"{LIST}run-1/usage").mock(
        return_value=httpx.Response(409, headers={"Retry-After": "300"})
    )
    other = letta_api.get(LIST).mock(return_value=httpx.Response(200, json=[]))
    client = make_client(FakeTime())
    with pytest.raises(LettaPostponed):
        await client.get_usage("run-1")
    await client.list_runs(limit=1)
    assert other.call_count == 1


# ---- the pace -------------------------------------------------------------------------


@letta_api
async def test_the_rate_limit_spaces_requests() -> None:
    letta_api.get(LIST).mock(return_value=httpx.Response(200, json=[]))
    fake_time = FakeTime()
    client = make_client(fake_time, rate_limit=10.0)
    for _ in range(15):
        await client.list_runs(limit=1)
    # A bucket of one second's worth drains at once; 5 more are spaced by 0.1 s.
    assert sum(fake_time.sleeps) == pytest.approx(0.5)
    assert client.pace.rate() == 10.0


async def send_for(
    pace: AdaptivePace, time: FakeTime, server: ThrottlingServer, seconds: float, demand: float
) -> list[float | None]:
    """Requests at up to `demand`/s through the pace; the rate in force each second."""
    end = time.now + seconds
    next_request = time.now
    rates: list[float | None] = []
    next_second = time.now
    while time.now < end:
        time.now = max(time.now, next_request)
        next_request += 1.0 / demand
        sent = await pace.acquire()
        time.now += 0.001  # the round trip
        pace.answered(sent, throttled=server.throttles(time.now))
        while time.now >= next_second:
            rates.append(pace.rate())
            next_second += 1.0
    return rates


async def test_a_few_random_429s_do_not_slow_the_pace() -> None:
    fake_time = FakeTime()
    for cap in (50.0, 0.0):
        pace = AdaptivePace(cap, clock=fake_time, sleep=fake_time.sleep)
        rates = await send_for(pace, fake_time, ThrottlingServer(noise=0.025), 120, demand=40)
        assert set(rates) == {cap or None}


async def test_a_real_limit_is_found_and_held() -> None:
    fake_time = FakeTime()
    for cap in (50.0, 0.0):
        pace = AdaptivePace(cap, clock=fake_time, sleep=fake_time.sleep)
        rates = await send_for(pace, fake_time, ThrottlingServer(limit=30), 70, demand=90)
        held = rates[10:]
        assert all(rate is not None and 24 <= rate <= 36 for rate in held), rates


async def test_a_storm_takes_the_pace_to_the_floor_and_quiet_brings_it_back() -> None:
    fake_time = FakeTime()
    pace = AdaptivePace(50.0, clock=fake_time, sleep=fake_time.sleep)
    server = ThrottlingServer(storm=True)
    rates = await send_for(pace, fake_time, server, 30, demand=100)
    # While the 429s go on the pace holds the floor (LettaExporterThrottledToFloor).
    assert rates[10:] == [FLOOR_PER_S] * len(rates[10:]), rates
    server.storm = False
    rates = await send_for(pace, fake_time, server, 60, demand=100)
    assert rates[-1] == 50.0


async def test_a_limit_that_lifts_lets_the_pace_go_without_a_cap() -> None:
    fake_time = FakeTime()
    pace = AdaptivePace(0.0, clock=fake_time, sleep=fake_time.sleep)
    server = ThrottlingServer(limit=5)
    rates = await send_for(pace, fake_time, server, 30, demand=40)
    assert rates[-1] is not None and rates[-1] < 10
    server.lift_limit()
    rates = await send_for(pace, fake_time, server, 60, demand=40)
    assert rates[-1] is None


async def test_429s_of_requests_sent_before_a_cut_do_not_cut_again() -> None:
    fake_time = FakeTime()
    pace = AdaptivePace(40.0, clock=fake_time, sleep=fake_time.sleep)
    sent = [await pace.acquire() for _ in range(40)]  # in flight together
    fake_time.now += ADJUST_EVERY_S
    for sent_at in sent[:20]:
        pace.answered(sent_at, throttled=True)
    cut = pace.rate()
    assert cut is not None and cut < 40.0
    fake_time.now += ADJUST_EVERY_S
    for sent_at in sent[20:]:  # the same congestion, answered later
        pace.answered(sent_at, throttled=True)
    rate = pace.rate()
    assert rate is not None and rate >= cut


async def test_without_a_cap_a_429_on_the_first_request_does_not_cap() -> None:
    fake_time = FakeTime()
    pace = AdaptivePace(0.0, clock=fake_time, sleep=fake_time.sleep)
    pace.answered(await pace.acquire(), throttled=True)
    fake_time.now += ADJUST_EVERY_S
    for _ in range(20):
        pace.answered(await pace.acquire(), throttled=False)
    assert pace.rate() is None
    assert sum(fake_time.sleeps) == 0

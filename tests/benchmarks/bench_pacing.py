"""How the pace copes with 429s: noise, a real limit, a limit that lifts, a storm.

    python -m tests.benchmarks.bench_pacing [--seconds 60]

On a virtual clock (no real waits), the pace alone (exporter/letta/pacing.py) against a
modelled server; the exporter sends as fast as the pace lets it, up to `demand`
requests/s, and every answer is told to the pace. Cases:

- **noise**: 2.5 % of answers are 429 whatever the rate; demand 40/s, no cap. Target
  (issue #26): at most 10 % of throughput lost.
- **limit R**: the server accepts R requests/s (a token bucket of one request, as
  `FakeLetta.set_request_budget`) and answers 429 above; demand 3 R, no cap and the
  default cap. Target: found within 10 s, then held within ±20 % of R.
- **lifted**: the limit of 5/s lifts after `--seconds`; seconds until the pace is back at
  the 50/s cap (or lets go, without a cap).
- **storm**: every answer 429 for `--seconds` at the default cap: requests sent and the
  lowest rate.

Prints, per case, the requests sent and accepted per second (mean over the held part,
and the lowest and highest one-second figures there) and the seconds to find the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from dataclasses import dataclass, field

from exporter.letta.pacing import AdaptivePace
from tests.throttling import ThrottlingServer


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)


@dataclass
class Seconds:
    sent: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    def add(self, now: float, throttled: bool) -> None:
        second = int(now)
        while len(self.sent) <= second:
            self.sent.append(0)
            self.accepted.append(0)
        self.sent[second] += 1
        self.accepted[second] += 0 if throttled else 1


async def drive(
    pace: AdaptivePace,
    clock: VirtualTime,
    server: ThrottlingServer,
    seconds: float,
    demand: float,
    log: Seconds,
) -> None:
    """Send at up to `demand` requests/s through the pace for `seconds`."""
    end = clock.now + seconds
    next_demand = clock.now
    while clock.now < end:
        clock.now = max(clock.now, next_demand)
        next_demand += 1.0 / demand
        sent_at = await pace.acquire()
        throttled = server.throttles(clock.now)
        log.add(clock.now, throttled)
        clock.now += 0.001  # the answer's round trip
        pace.answered(sent_at, throttled=throttled)


def held(values: list[int], start: int) -> tuple[float, int, int]:
    part = values[start:-1] or [0]
    return sum(part) / len(part), min(part), max(part)


def found_after(log: Seconds, limit: float) -> float | None:
    """The first second from which every later second sent within ±20 % of `limit`."""
    for second in range(len(log.sent) - 1):
        if all(abs(s - limit) <= 0.2 * limit for s in log.sent[second:-1]):
            return float(second)
    return None


def line(name: str, log: Seconds, start: int, found: float | None = None) -> None:
    sent = held(log.sent, start)
    acc = held(log.accepted, start)
    print(
        f"{name:<28} {sent[0]:>9.1f} {sent[1]:>5d}-{sent[2]:<5d} {acc[0]:>9.1f} "
        f"{acc[1]:>5d}-{acc[2]:<5d} {'-' if found is None else f'{found:.0f}':>8}"
    )


async def run(seconds: float) -> None:
    print(
        f"{'case':<28} {'sent/s':>9} {'min-max':<11} {'accept/s':>9} {'min-max':<11} {'found s':>8}"
    )
    for cap, demand in ((0.0, 40.0), (50.0, 40.0)):
        clock = VirtualTime()
        pace = AdaptivePace(cap, clock=clock, sleep=clock.sleep)
        log = Seconds()
        await drive(pace, clock, ThrottlingServer(noise=0.025), seconds, demand, log)
        line(f"noise 2.5% cap={cap:g} demand={demand:g}", log, 0)
    for limit in (5.0, 30.0, 100.0):
        for cap in (0.0, 50.0):
            if cap and cap < limit:
                continue
            clock = VirtualTime()
            pace = AdaptivePace(cap, clock=clock, sleep=clock.sleep)
            log = Seconds()
            await drive(pace, clock, ThrottlingServer(limit=limit), seconds, 3 * limit, log)
            found = found_after(log, limit)
            line(f"limit {limit:g}/s cap={cap:g}", log, 10, found)
    for cap in (50.0, 0.0):
        clock = VirtualTime()
        pace = AdaptivePace(cap, clock=clock, sleep=clock.sleep)
        server = ThrottlingServer(limit=5.0)
        log = Seconds()
        await drive(pace, clock, server, seconds, 40.0, log)
        server.lift_limit()
        lifted = clock.now
        while pace.rate() is not None and pace.rate() != cap:
            await drive(pace, clock, server, 1.0, 80.0, log)
            if clock.now - lifted > 600:
                break
        back = clock.now - lifted
        print(
            f"lifted 5/s -> none, cap={cap:g}: "
            f"back to {'the cap' if cap else 'no cap'} in {back:.0f} s"
        )
    clock = VirtualTime()
    pace = AdaptivePace(50.0, clock=clock, sleep=clock.sleep)
    log = Seconds()
    await drive(pace, clock, ThrottlingServer(storm=True), seconds, math.inf, log)
    print(f"storm, cap=50: {sum(log.sent)} requests in {seconds:g} s, lowest rate {pace.rate()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each case")
    args = parser.parse_args()
    asyncio.run(run(args.seconds))


if __name__ == "__main__":
    main()

"""How fast the pace falls to the floor in a 429 storm and climbs back, per cap.

    python -m tests.benchmarks.bench_pacing

On a virtual clock (no real waits): a server that answers every request with 429 for
`--storm` seconds, then none. The exporter sends as fast as the pace lets it. Prints,
per `--letta.rate-limit`, the seconds until the rate in force reached the floor, the
requests sent during the storm, and the seconds from the storm's end until the rate
was back at the cap.
"""

from __future__ import annotations

import argparse
import asyncio

from exporter.letta.pacing import FLOOR_PER_S, AdaptivePace


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)


async def storm(cap: float, storm_s: float) -> tuple[float | None, int, float]:
    clock = VirtualTime()
    pace = AdaptivePace(cap, clock=clock, sleep=clock.sleep)
    to_floor: float | None = None
    sent = 0
    while clock.now < storm_s:
        sent_at = await pace.acquire()
        sent += 1
        clock.now += 0.05  # the answer's round trip
        pace.throttled(sent_at)
        if to_floor is None and pace.rate() == FLOOR_PER_S:
            to_floor = clock.now
    calm = clock.now
    while pace.rate() != cap:
        await pace.acquire()
        clock.now += 0.05
    return to_floor, sent, clock.now - calm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", type=float, default=60.0, help="seconds of 429s")
    args = parser.parse_args()
    print(f"{'cap/s':>7} {'to floor s':>11} {'sent in storm':>14} {'back to cap s':>14}")
    for cap in (5.0, 50.0, 500.0):
        to_floor, sent, back = asyncio.run(storm(cap, args.storm))
        floor = f"{to_floor:.1f}" if to_floor is not None else "never"
        print(f"{cap:>7g} {floor:>11} {sent:>14} {back:>14.1f}")


if __name__ == "__main__":
    main()

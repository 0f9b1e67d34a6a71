"""One invoices run in a process of its own, as a worker would run it, on a clock shared with the test that
started it (tests/test_shared_limits.py): `python -m tests.limits_worker --tenant acme --speed 20 ...`.

Once it has imported the project it creates the file `--ready` and waits for the file `--go`, so that every
worker's run starts at the same moment; then it prints one JSON line: the run's final state and message."""
from __future__ import annotations

import argparse
import json
import time
from datetime import date, datetime
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--since", required=True)
    parser.add_argument("--until", required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--clock-start", required=True)
    parser.add_argument("--clock-origin", type=float, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--go", type=Path, required=True)
    args = parser.parse_args()

    from atx.connections import use_clock
    from flows.invoices import invoices
    from sandbox.clock import ScaledClock

    clock = ScaledClock(args.speed, start=datetime.fromisoformat(args.clock_start), origin=args.clock_origin)
    use_clock(clock, sleep=clock.sleep)
    args.ready.touch()
    deadline = time.monotonic() + 300
    while not args.go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    state = invoices(tenant=args.tenant, since=date.fromisoformat(args.since), until=date.fromisoformat(args.until),
                     return_state=True)
    print(json.dumps({"state": state.type.value, "message": state.message}), flush=True)


if __name__ == "__main__":
    main()

"""One invoices sync in a process of its own, as a worker runs it, printing its figures as one JSON line.

    python -m bench.sync_process --tenant NAME --since YYYY-MM-DD --until YYYY-MM-DD [--profile FILE]

The overhead case starts this beside the sandbox it serves, so the figures are the sync's alone: the
simulators' CPU and memory stay in the bench process. The tenant file, its secrets and PREFECT_API_URL
come from the environment, as they do for a worker's run. With --profile the flow's thread is profiled
on CPU time (time.thread_time), so time spent waiting on the simulators' answers is not counted.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import resource
import time
from datetime import date


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_process")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--since", required=True, type=date.fromisoformat)
    parser.add_argument("--until", required=True, type=date.fromisoformat)
    parser.add_argument("--profile", help="write the flow thread's cProfile stats here")
    args = parser.parse_args(argv)

    from flows.invoices import invoices

    profile = cProfile.Profile(time.thread_time) if args.profile else None
    wall0, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
    if profile:
        profile.enable()
    try:
        state = invoices(tenant=args.tenant, since=args.since, until=args.until, return_state=True)
    finally:
        if profile:
            profile.disable()
    wall, cpu, thread = time.perf_counter() - wall0, time.process_time() - cpu0, time.thread_time() - thread0
    if profile:
        profile.dump_stats(args.profile)
    summary = state.result(raise_on_failure=False) if state.is_completed() else None
    print(json.dumps({
        "state": state.name, "message": state.message,
        "created": summary.count("created") if summary else None,
        "set_aside": summary.set_aside_count if summary else None,
        "wall_seconds": round(wall, 1), "cpu_seconds_process": round(cpu, 1),
        "cpu_seconds_flow_thread": round(thread, 1),
        "peak_rss_mib": peak_rss_mib(),
    }))


def peak_rss_mib() -> int:
    """This process's own peak memory. Linux's VmHWM belongs to the memory the process has had since it
    started this program; getrusage's ru_maxrss also keeps the pages of the parent it was forked from (the
    bench, holding a sandbox of 10,000 invoices), which would be counted as the sync's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux, bytes on macOS


if __name__ == "__main__":
    main()

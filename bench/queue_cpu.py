"""CPU per drained job: Mini-Jenkin's queue beside pgqueuer, in alternating pairs.

Run with `make bench-queue-cpu`. Each side drains 20,000 no-op jobs with the
harness of bench/queue.py (section (a)) and then 1,000 more:
- workers: CPU time of the worker processes (getrusage of the children),
  the large drain minus the small one, so that start-up cancels out;
- total: the machine's busy time from /proc/stat while the large drain
  ran, divided by its jobs. Besides the workers it is nearly all
  PostgreSQL, so the server should run on this machine.
Throughput alone cannot compare two queues that do not use all the cores;
CPU per job can. The figures are printed, not written to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = os.environ.get("MINIJENKIN_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LARGE = 20_000
SMALL = 1_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """Non-idle CPU time of the whole machine since boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / CLOCK_TICKS


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(queue: str, url: str, processes: int, batch: int) -> dict[str, float]:
    """Drain LARGE and SMALL jobs of `queue` in this process; return rate and CPU per job."""
    module: Any
    if queue == "minijenkin":
        from bench import queue as module

        def drain(jobs: int) -> float:
            return float(module.measure_minijenkin_throughput(url, jobs, processes, batch))
    else:
        from bench import competitors as module

        def drain(jobs: int) -> float:
            return float(module.throughput(queue, url, jobs, processes, batch))

    # The drain itself runs inside wait_drained: measure the machine there.
    window: dict[str, float] = {}
    wait_drained: Callable[..., float] = module.wait_drained

    def timed_wait(*args: Any, **kwargs: Any) -> float:
        started = _busy_seconds()
        try:
            return wait_drained(*args, **kwargs)
        finally:
            window["busy"] = _busy_seconds() - started

    module.wait_drained = timed_wait
    before = _children_seconds()
    rate = drain(LARGE)
    large_workers = _children_seconds() - before
    large_busy = window["busy"]
    before = _children_seconds()
    drain(SMALL)
    small_workers = _children_seconds() - before
    return {"jobs_per_second": rate,
            "workers_us": 1e6 * (large_workers - small_workers) / (LARGE - SMALL),
            "total_us": 1e6 * large_busy / LARGE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="admin URL of the server to measure on")
    parser.add_argument("--pairs", type=int, default=3, help="Mini-Jenkin/pgqueuer pairs to run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"),
                        help="Python of the environment that has pgqueuer")
    parser.add_argument("--queue", choices=("minijenkin", "pgqueuer"),
                        help="measure this queue once in this process and print JSON (internal)")
    args = parser.parse_args()

    if args.queue:
        print(json.dumps(measure(args.queue, args.url, args.processes, args.batch)))
        return

    print("| pair | queue | jobs/s | workers us/job | total us/job |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for pair in range(1, args.pairs + 1):
        for queue, python in (("minijenkin", sys.executable), ("pgqueuer", args.bench_python)):
            result = subprocess.run(
                [python, "-m", "bench.queue_cpu", "--queue", queue, "--url", args.url,
                 "--processes", str(args.processes), "--batch", str(args.batch)],
                check=True, capture_output=True, text=True, cwd=ROOT)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"| {pair} | {queue} | {figures['jobs_per_second']:.0f} | "
                  f"{figures['workers_us']:.0f} | {figures['total_us']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""Pipeline-file benchmark: validation and planning speed, and how fast hostile files are rejected.

Run with `.venv/bin/python bench/pipeline.py`; it replaces its own section of
BENCHMARKS.md. Every figure is also given as a ratio to a reference measured
in the same run, because the machine is shared and timings drift: loading
the same typical file with ruamel.yaml's safe loader alone (no positions, no
validation).

Figures (median of several rounds, each round timing a batch of calls):
- validate + plan: `parse_pipeline` and `build_graph` of a typical 6-job
  pipeline with a 3x2 matrix;
- alias bomb: a 10-line "billion laughs" file (9^9 nodes once expanded),
  rejected by the event scan;
- 2 MiB file: rejected by its size before decoding;
- expression: `evaluate_condition` of a typical job condition.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minijenkin.errors import PipelineError  # noqa: E402
from minijenkin.pipeline.events import Event  # noqa: E402
from minijenkin.pipeline.expressions import Scope, evaluate_condition  # noqa: E402
from minijenkin.pipeline.parser import parse_pipeline  # noqa: E402
from minijenkin.pipeline.plan import build_graph  # noqa: E402

ROUNDS = 7
SECTION_START = "<!-- pipeline benchmark start -->"
SECTION_END = "<!-- pipeline benchmark end -->"

TYPICAL = """\
name: CI
on:
  push:
    branches: [main, 'release/**']
    paths-ignore: ['docs/**']
  pull_request:
env:
  APP: shop
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: make lint
  test:
    needs: lint
    strategy:
      matrix:
        python: ['3.11', '3.12', '3.13']
        db: [postgres-15, postgres-18]
    env:
      DB: ${{ matrix.db }}
    steps:
      - uses: actions/checkout@v4
      - name: Test on ${{ matrix.python }}
        run: make test PYTHON=python${{ matrix.python }}
      - if: failure()
        run: ./collect-logs.sh
  package:
    needs: test
    steps:
      - run: make dist
  docs:
    if: github.event_name == 'push'
    steps:
      - run: make docs
  deploy:
    needs: [package, docs]
    if: github.ref == 'refs/heads/main' && !contains(github.event.head_commit.message, '[skip deploy]')
    environment: production
    concurrency: deploy-production
    steps:
      - run: ./deploy.sh
  notify:
    needs: deploy
    if: always()
    steps:
      - run: ./notify.sh ${{ needs.deploy.result }}
"""

ALIAS_BOMB = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *[f"{name}: &{name} [{','.join(['*' + previous] * 9)}]"
      for previous, name in zip("abcdefgh", "bcdefghi", strict=True)],
    "jobs: {a: {steps: [{run: *i}]}}",
]) + "\n"

BIG_FILE = b"jobs:\n  a:\n    steps:\n      - run: echo\n" + b"# padding\n" * (2 * 1024 * 1024 // 10)
EVENT = Event(kind="push", ref="refs/heads/main", commit="c" * 40, message="Fix [skip deploy]")


def seconds_per_call(action: Callable[[], object], calls: int) -> float:
    """Median over ROUNDS of the time one call takes, each round timing `calls` calls."""
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def expect_rejection(data: bytes | str) -> Callable[[], None]:
    def action() -> None:
        try:
            parse_pipeline(data, file=".minijenkin.yml")
        except PipelineError:
            return
        raise AssertionError("the file was accepted")

    return action


def main() -> None:
    safe = YAML(typ="safe", pure=True)
    reference = seconds_per_call(lambda: safe.load(io.StringIO(TYPICAL)), 50)
    validate_plan = seconds_per_call(lambda: build_graph(parse_pipeline(TYPICAL, file="ci.yml"), EVENT), 20)
    bomb = seconds_per_call(expect_rejection(ALIAS_BOMB), 5)
    big = seconds_per_call(expect_rejection(BIG_FILE), 20)
    scope = Scope(contexts={"github": {"ref": "refs/heads/main", "event": {"head_commit": {"message": "x"}}}})
    condition = "github.ref == 'refs/heads/main' && !contains(github.event.head_commit.message, '[skip]')"
    expression = seconds_per_call(lambda: evaluate_condition(condition, scope), 2000)

    rows = [
        ("reference: ruamel.yaml safe load of the typical file", reference),
        ("validate + plan the typical file (6 jobs, 3x2 matrix)", validate_plan),
        ("reject the alias bomb (9^9 nodes if expanded)", bomb),
        ("reject a 2 MiB file", big),
        ("parse + evaluate one job condition", expression),
    ]
    cpu = _cpu_model()
    lines = [
        SECTION_START,
        "## Pipeline files",
        "",
        f"Command: `.venv/bin/python bench/pipeline.py`. Machine: {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, shared with other work. Date: "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Median of {ROUNDS} rounds.",
        "",
        "| what | time per call | ratio to reference |",
        "| --- | ---: | ---: |",
        *[f"| {label} | {value * 1000:.3f} ms | {value / reference:.3g} |" for label, value in rows],
        "",
        "The alias bomb and the 2 MiB file are rejected before any tree is built, in about the time "
        "(or less) it takes to load a normal pipeline file.",
        SECTION_END,
    ]
    _write_section("\n".join(lines))
    print("\n".join(lines))


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip() if found else "unknown CPU"


def _write_section(section: str) -> None:
    path = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_START in text and SECTION_END in text:
        before = text[:text.index(SECTION_START)]
        after = text[text.index(SECTION_END) + len(SECTION_END):]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()

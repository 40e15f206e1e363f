"""The queue's hot statements reach their rows by primary key, whatever the statistics.

A busy queue turns thousands of jobs from queued to running to succeeded
between two analyses, so the planner works from stale statistics most of
the time. A plan that trusted them walked every dead entry of the partial
index of running jobs and scanned job_attempts whole at each finish, which
cut the benchmark's drain rate from about 4,000 to about 430 jobs/s. This
test gathers the most misleading statistics on purpose (every job queued,
no attempt recorded yet) and reads the plan of every statement that
claiming and finishing run, through auto_explain.

The hot functions run with generic plans, whose estimated cost can pass
jit_above_cost: compiling the choice of jobs took 10 ms per claim and cut
a 60,000-job drain to about 400 jobs/s, so no plan may use JIT either.
"""

from __future__ import annotations

import re
import uuid

import psycopg

from tests.support.factories import create_repo, register_worker

RUNS = 2_000
JOBS_PER_RUN = 10
BATCH = 10
# PostgreSQL's PREPARE documentation: a cached statement gets custom plans
# for its first five executions and may switch to a generic plan after, so
# the later rounds matter most.
ROUNDS = 8
TABLES = ("jobs", "pipeline_runs", "job_attempts")
RUNNING_INDEXES = ("jobs_running_repo_idx", "jobs_running_worker_idx")


def _queue(db: psycopg.Connection) -> uuid.UUID:
    repo_id = create_repo(db, name="acme/plans")
    db.execute("INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
               "SELECT %s, 'queued', 'api', 'refs/heads/main', repeat('a', 40) "
               "FROM generate_series(1, %s)", (repo_id, RUNS))
    db.execute("INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at) "
               "SELECT r.id, r.repo_id, 'script', 'job' || g, 'job' || g, 'queued', now() "
               "FROM pipeline_runs r CROSS JOIN generate_series(1, %s) AS g ORDER BY r.id, g",
               (JOBS_PER_RUN,))
    for table in TABLES:
        db.execute(f"ANALYZE {table}")
    return register_worker(db)


def _executed_nodes(plans: list[str]) -> list[str]:
    """Plan lines of nodes that ran (auto_explain marks the others 'never executed')."""
    return [line.strip() for plan in plans for line in plan.splitlines()
            if "(actual" in line and "never executed" not in line]


def test_hot_path_plans_use_primary_keys(db: psycopg.Connection) -> None:
    worker_id = _queue(db)
    plans: list[str] = []
    db.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    db.execute("LOAD 'auto_explain'")
    for setting, value in (("log_min_duration", "0"), ("log_nested_statements", "on"),
                           ("log_analyze", "on"), ("log_timing", "off"),
                           ("log_level", "notice")):
        db.execute(f"SET auto_explain.{setting} = {value}")
    # Any plan would be compiled, unless its function turns JIT off.
    db.execute("SET jit_above_cost = 0")

    finished = 0
    for _ in range(ROUNDS):
        jobs = db.execute("SELECT * FROM mj_job_claim_v2(%s, '{}', %s)",
                          (worker_id, BATCH)).fetchall()
        assert len(jobs) == BATCH
        outcomes = db.execute(
            "SELECT * FROM mj_job_finish_many_v1(%s, %s, %s, %s, %s, 1, 60)",
            ([job["job_id"] for job in jobs], [job["lease_token"] for job in jobs],
             ["succeeded"] * BATCH, [0] * BATCH, [None] * BATCH)).fetchall()
        finished += sum(row["outcome"] == "finished" for row in outcomes)
    db.execute("RESET auto_explain.log_min_duration")

    assert finished == ROUNDS * BATCH
    nodes = _executed_nodes(plans)
    assert len(nodes) > ROUNDS * 10, "auto_explain reported no plans"
    seq_scans = [node for node in nodes
                 if re.search(rf"Seq Scan on ({'|'.join(TABLES)})\b", node)]
    assert seq_scans == []
    # The fairness ranking counts a repository's running jobs through
    # jobs_running_repo_idx on purpose (alias rj). No lookup by id may use it.
    running_index_scans = [node for node in nodes
                           if any(index in node for index in RUNNING_INDEXES)
                           and " on jobs rj " not in node]
    assert running_index_scans == []
    nested = [plan for plan in plans if "Query Text: SELECT * FROM mj_" not in plan]
    assert [plan for plan in nested if "JIT:" in plan] == []


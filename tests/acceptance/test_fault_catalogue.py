"""The fault catalogue: bad input across webhooks, API parameters, pipeline files and
log byte streams, each with the status and message it must get.

No case may produce a 500, stop a process or lose data: after each group the
server and the worker still serve a valid request, and the valid work done
in between is all there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from minijenkin.config import Settings
from minijenkin.logs.lines import SPLIT_MARKER
from tests.support.api import ApiServer
from tests.support.factories import create_repo, create_run
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.queue import add_repo, job_id, plan_run, run_finished, script_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

HOOK_SECRET = "catalogue-hook-secret"
REPO = "acme/catalogue"
CAPTURE = os.environ.get("MINIJENKIN_TEST_CAPTURE_FAULTS") == "1"


@dataclass(frozen=True)
class HttpFault:
    """One bad request and the response it must get: `detail` exact, or its start with `prefix`."""

    name: str
    method: str
    path: str
    status: int
    detail: str
    prefix: bool = False
    content: bytes | None = None
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = "admin"


def _github(
    body: bytes, *, event: str = "push", secret: str = HOOK_SECRET, **overrides: str
) -> dict[str, str]:
    headers = signed_headers(secret, body, event=event)
    headers.update(overrides)
    return headers


def _push(**changes: Any) -> bytes:
    payload = push_payload(full_name=REPO, clone_url="file:///nowhere", after="b" * 40)
    payload.update(changes)
    return encode(payload)


PUSH = _push()
NOT_JSON = b"{not json"
ARRAY = b"[1, 2, 3]"

WEBHOOK_FAULTS = [
    HttpFault(
        "unknown forge",
        "POST",
        "/hooks/sourceforge",
        404,
        "unknown forge 'sourceforge': use github, gitlab, gitea, forgejo, bitbucket",
        content=PUSH,
    ),
    HttpFault(
        "missing event header",
        "POST",
        "/hooks/github",
        400,
        "missing X-GitHub-Event header",
        content=PUSH,
        headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
    ),
    HttpFault(
        "missing signature",
        "POST",
        "/hooks/github",
        401,
        "missing X-Hub-Signature-256 header: set a secret on the webhook",
        content=PUSH,
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"},
    ),
    HttpFault(
        "wrong signature",
        "POST",
        "/hooks/github",
        401,
        "invalid X-Hub-Signature-256 signature",
        content=PUSH,
        headers=_github(PUSH, secret="another-secret"),
    ),
    HttpFault(
        "signature of other body",
        "POST",
        "/hooks/github",
        401,
        "invalid X-Hub-Signature-256 signature",
        content=PUSH + b" ",
        headers=_github(PUSH),
    ),
    HttpFault(
        "malformed signature",
        "POST",
        "/hooks/github",
        401,
        "invalid X-Hub-Signature-256 signature",
        content=PUSH,
        headers=_github(PUSH, **{"X-Hub-Signature-256": "md5=zz"}),
    ),
    HttpFault(
        "body not json",
        "POST",
        "/hooks/github",
        400,
        "invalid JSON body: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        content=NOT_JSON,
        headers=_github(NOT_JSON),
    ),
    HttpFault(
        "body json array",
        "POST",
        "/hooks/github",
        400,
        "invalid JSON body: expected an object",
        content=ARRAY,
        headers=_github(ARRAY),
    ),
    HttpFault(
        "empty body",
        "POST",
        "/hooks/github",
        400,
        "invalid JSON body: Expecting value: line 1 column 1 (char 0)",
        content=b"",
        headers=_github(b""),
    ),
    HttpFault(
        "body invalid utf-8",
        "POST",
        "/hooks/github",
        400,
        "invalid JSON body: Expecting value: line 1 column 1 (char 0)",
        content=b"\xff\xfe{}",
        headers=_github(b"\xff\xfe{}"),
    ),
    HttpFault(
        "unknown repository",
        "POST",
        "/hooks/github",
        404,
        "repository 'acme/unknown' is not registered",
        content=encode(push_payload(full_name="acme/unknown", clone_url="file:///x", after="b" * 40)),
        headers=_github(
            encode(push_payload(full_name="acme/unknown", clone_url="file:///x", after="b" * 40))
        ),
    ),
    HttpFault(
        "ref missing",
        "POST",
        "/hooks/github",
        400,
        "the payload field 'ref' has the wrong type",
        content=_push(ref=None),
        headers=_github(_push(ref=None)),
    ),
    HttpFault(
        "ref is a number",
        "POST",
        "/hooks/github",
        400,
        "the payload field 'ref' has the wrong type",
        content=_push(ref=42),
        headers=_github(_push(ref=42)),
    ),
    HttpFault(
        "after not a commit",
        "POST",
        "/hooks/github",
        400,
        "the payload field 'after' is not a commit id",
        content=_push(after="not-a-sha"),
        headers=_github(_push(after="not-a-sha")),
    ),
    HttpFault(
        "after with nul",
        "POST",
        "/hooks/github",
        400,
        "the payload field 'after' is not a commit id",
        content=_push(after="b" * 39 + "\x00"),
        headers=_github(_push(after="b" * 39 + "\x00")),
    ),
    HttpFault(
        "repository not object",
        "POST",
        "/hooks/github",
        400,
        "the payload field 'repository' has the wrong type",
        content=_push(repository="acme/catalogue"),
        headers=_github(_push(repository="acme/catalogue")),
    ),
    HttpFault(
        "unsupported event",
        "POST",
        "/hooks/github",
        202,
        "GitHub event 'star' starts no run",
        content=PUSH,
        headers=_github(PUSH, event="star"),
    ),
    HttpFault(
        "gitlab without token",
        "POST",
        "/hooks/gitlab",
        401,
        "missing X-Gitlab-Token header: set a secret on the webhook",
        content=PUSH,
        headers={"X-Gitlab-Event": "Push Hook"},
    ),
    HttpFault(
        "gitea bad signature",
        "POST",
        "/hooks/gitea",
        401,
        "invalid X-Gitea-Signature signature",
        content=PUSH,
        headers={"X-Gitea-Event": "push", "X-Gitea-Signature": "00" * 32},
    ),
    HttpFault(
        "bitbucket no signature",
        "POST",
        "/hooks/bitbucket",
        401,
        "missing X-Hub-Signature header: set a secret on the webhook",
        content=PUSH,
        headers={"X-Event-Key": "repo:push"},
    ),
]

API_FAULTS = [
    HttpFault(
        "runs limit zero",
        "GET",
        "/api/runs?limit=0",
        422,
        "limit: Input should be greater than or equal to 1",
    ),
    HttpFault(
        "runs limit huge",
        "GET",
        "/api/runs?limit=100000",
        422,
        "limit: Input should be less than or equal to 200",
    ),
    HttpFault(
        "runs limit text",
        "GET",
        "/api/runs?limit=ten",
        422,
        "limit: Input should be a valid integer, unable to parse string as an integer",
    ),
    HttpFault(
        "runs before beyond bigint",
        "GET",
        f"/api/runs?before={2**63}",
        422,
        f"before: Input should be less than or equal to {2**63 - 1}",
    ),
    HttpFault(
        "runs status unknown",
        "GET",
        "/api/runs?status=exploded",
        422,
        "status: Input should be 'pending', 'queued', 'running', 'succeeded', 'failed', "
        "'cancelled', 'skipped', 'timed_out', 'waiting', 'awaiting_approval' or 'superseded'",
    ),
    HttpFault(
        "run id text",
        "GET",
        "/api/runs/abc",
        422,
        "run_id: Input should be a valid integer, unable to parse string as an integer",
    ),
    HttpFault(
        "run id beyond bigint",
        "GET",
        f"/api/runs/{2**64}",
        422,
        f"run_id: Input should be less than or equal to {2**63 - 1}",
    ),
    HttpFault(
        "approve job id beyond bigint",
        "POST",
        f"/api/jobs/{2**64}/approve",
        422,
        f"job_id: Input should be less than or equal to {2**63 - 1}",
    ),
    HttpFault("run not found", "GET", "/api/runs/987654321", 404, "run 987654321 does not exist"),
    HttpFault("job not found", "GET", "/api/jobs/987654321", 404, "job 987654321 does not exist"),
    HttpFault(
        "job logs attempt zero",
        "GET",
        "/api/jobs/1/logs?attempt=0",
        422,
        "attempt: Input should be greater than or equal to 1",
    ),
    HttpFault(
        "job logs attempt beyond integer",
        "GET",
        f"/api/jobs/1/logs?attempt={2**31}",
        422,
        f"attempt: Input should be less than or equal to {2**31 - 1}",
    ),
    HttpFault(
        "job logs of missing job", "GET", "/api/jobs/987654321/logs", 404, "job 987654321 does not exist"
    ),
    HttpFault(
        "cancel missing run", "POST", "/api/runs/987654321/cancel", 404, "run 987654321 does not exist"
    ),
    HttpFault(
        "repos offset negative",
        "GET",
        "/api/repos?offset=-1",
        422,
        "offset: Input should be greater than or equal to 0",
    ),
    HttpFault(
        "repo create not json",
        "POST",
        "/api/repos",
        400,
        "the request body is not valid JSON at character 1: "
        "Expecting property name enclosed in double quotes",
        content=b"{oops",
        headers={"Content-Type": "application/json"},
    ),
    HttpFault(
        "repo create json cut short",
        "POST",
        "/api/repos",
        400,
        "the request body is not valid JSON at character 17: Expecting ',' delimiter",
        content=b'{"name": "acme/x"',
        headers={"Content-Type": "application/json"},
    ),
    HttpFault(
        "repo create form body",
        "POST",
        "/api/repos",
        400,
        "the request body must be JSON with Content-Type: application/json, "
        "not application/x-www-form-urlencoded",
        content=b"name=acme/x&url=https://example.com/x.git",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    HttpFault(
        "repo create text plain",
        "POST",
        "/api/repos",
        400,
        "the request body must be JSON with Content-Type: application/json, not text/plain",
        content=b'{"name": "acme/x", "url": "https://example.com/x.git"}',
        headers={"Content-Type": "text/plain"},
    ),
    HttpFault(
        "repo create without content type",
        "POST",
        "/api/repos",
        400,
        "the request body must be JSON with Content-Type: application/json; "
        "the request has no Content-Type header",
        content=b'{"name": "acme/x", "url": "https://example.com/x.git"}',
    ),
    HttpFault(
        "repo create latin-1 body",
        "POST",
        "/api/repos",
        400,
        "the request body is not valid JSON text: utf-8 cannot decode byte 13; "
        "send JSON encoded as UTF-8",
        content=b'{"name": "caf\xe9", "url": "https://example.com/x.git"}',
        headers={"Content-Type": "application/json"},
    ),
    HttpFault(
        "repo create empty body",
        "POST",
        "/api/repos",
        422,
        "request body: Field required",
        content=b"",
        headers={"Content-Type": "application/json"},
    ),
    HttpFault(
        "repo create array",
        "POST",
        "/api/repos",
        422,
        "request body: Input should be a valid dictionary or object to extract fields from",
        json_body=[1],
    ),
    HttpFault(
        "repo create null",
        "POST",
        "/api/repos",
        422,
        "request body: Input should be a valid dictionary or object to extract fields from",
        content=b"null",
        headers={"Content-Type": "application/json"},
    ),
    HttpFault(
        "repo create no name",
        "POST",
        "/api/repos",
        422,
        "name: Field required",
        json_body={"url": "https://example.com/a.git"},
    ),
    HttpFault(
        "repo name with spaces",
        "POST",
        "/api/repos",
        422,
        "name: String should match pattern",
        prefix=True,
        json_body={"name": "a b", "url": "https://example.com/a.git"},
    ),
    HttpFault(
        "repo name too long",
        "POST",
        "/api/repos",
        422,
        "name: String should have at most 200 characters",
        json_body={"name": "a" * 201, "url": "https://example.com/a.git"},
    ),
    HttpFault(
        "repo url with nul",
        "POST",
        "/api/repos",
        422,
        "url: Value error, must not contain whitespace or control characters",
        json_body={"name": "acme/nul", "url": "https://example.com/\u0000.git"},
    ),
    HttpFault(
        "repo short secret",
        "POST",
        "/api/repos",
        422,
        "webhook_secret: String should have at least 8 characters",
        json_body={"name": "acme/x", "url": "https://example.com/a.git", "webhook_secret": "x"},
    ),
    HttpFault(
        "repo poll too often",
        "POST",
        "/api/repos",
        422,
        "poll_interval_seconds: Input should be greater than or equal to 5",
        json_body={"name": "acme/x", "url": "https://example.com/a.git", "poll_interval_seconds": 1},
    ),
    HttpFault(
        "secret name invalid",
        "PUT",
        "/api/repos/1/secrets/bad-name!",
        422,
        "invalid secret name 'bad-name!': use letters, digits and '_', not starting with a "
        "digit, at most 100 characters",
        json_body={"value": "long-enough-value"},
    ),
    HttpFault(
        "secret missing value", "PUT", "/api/repos/1/secrets/NAME", 422, "value: Field required", json_body={}
    ),
    HttpFault(
        "token scope unknown",
        "POST",
        "/api/tokens",
        422,
        "scope: Input should be 'read', 'trigger' or 'admin'",
        json_body={"name": "t", "scope": "root"},
    ),
    HttpFault("search without query", "GET", "/api/search", 422, "q: Field required"),
    HttpFault(
        "search query with nul", "GET", "/api/search?q=a%00b", 422, "q: must not contain NUL characters"
    ),
    HttpFault(
        "timeseries bad metric",
        "GET",
        "/api/metrics/timeseries?metric=nope",
        422,
        "metric: Input should be 'runs', ",
        prefix=True,
    ),
    HttpFault(
        "no token",
        "GET",
        "/api/runs",
        401,
        "authentication required: send 'Authorization: Bearer <token>' with a token of scope "
        "'read' or higher",
        token=None,
    ),
    HttpFault(
        "unknown token",
        "GET",
        "/api/runs",
        401,
        "invalid API token: it is unknown, revoked or expired",
        token="mjt_not_a_real_token",
    ),
    HttpFault(
        "header too large",
        "GET",
        "/api/runs",
        431,
        "request headers total ",
        prefix=True,
        headers={"X-Padding": "x" * 20000},
    ),
    HttpFault(
        "body too large",
        "POST",
        "/api/repos",
        413,
        f"request body of {2 * 1024 * 1024} bytes exceeds the maximum of {1024 * 1024} bytes",
        content=b" " * (2 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    ),
]


def _send(client: httpx.Client, server: ApiServer, fault: HttpFault) -> httpx.Response:
    headers = dict(fault.headers)
    if fault.token is None:
        client.headers.pop("Authorization", None)
    elif fault.token != "admin":
        headers["Authorization"] = f"Bearer {fault.token}"
    if fault.json_body is not None:
        return client.request(fault.method, fault.path, json=fault.json_body, headers=headers)
    return client.request(fault.method, fault.path, content=fault.content, headers=headers)


def _check(response: httpx.Response, fault: HttpFault) -> None:
    body = response.json()
    if CAPTURE:
        print(f"CAPTURE {fault.name!r}: {response.status_code} {body.get('detail')!r}")
    assert response.status_code == fault.status, body
    if fault.prefix:
        assert body["detail"].startswith(fault.detail), body
    else:
        assert body["detail"] == fault.detail, body


@pytest.fixture
def quiet_server(settings: Settings, database_url: str) -> Iterator[ApiServer]:
    """The API without maintenance loops, which start faster and idle here anyway."""
    server = ApiServer(settings, database_url, maintenance=False).start()
    yield server
    server.stop()


@pytest.fixture
def catalogue_repo(quiet_server: ApiServer) -> int:
    with quiet_server.client() as client:
        response = client.post(
            "/api/repos", json={"name": REPO, "url": "file:///nowhere", "webhook_secret": HOOK_SECRET}
        )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize("fault", WEBHOOK_FAULTS + API_FAULTS, ids=lambda fault: fault.name)
def test_http_fault(
    quiet_server: ApiServer, catalogue_repo: int, db: psycopg.Connection, fault: HttpFault
) -> None:
    runs_before = db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"]

    with quiet_server.client() as client:
        response = _send(client, quiet_server, fault)
    _check(response, fault)

    # Nothing half-done: no run appeared, and the server still responds.
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == runs_before
    with quiet_server.client() as client:
        assert client.get("/healthz").status_code == 200


@dataclass(frozen=True)
class PipelineFault:
    """A broken pipeline file: its run must fail with `reason` on the plan job."""

    name: str
    content: bytes
    reason: str


PIPELINE_FAULTS = [
    PipelineFault(
        "yaml syntax error",
        b"jobs: [unclosed\n",
        ".minijenkin.yml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    ),
    PipelineFault(
        "top level is a list",
        b"- build\n- test\n",
        ".minijenkin.yml:1:1: the file must be a mapping with a 'jobs' key",
    ),
    PipelineFault("no jobs", b"name: nothing\n", ".minijenkin.yml:1:1: missing required key 'jobs'"),
    PipelineFault(
        "job without steps",
        b"jobs:\n  build: {}\n",
        ".minijenkin.yml:2:10: jobs.build: missing required key 'steps'",
    ),
    PipelineFault(
        "needs unknown job",
        b"jobs:\n  a:\n    needs: [ghost]\n    steps:\n      - run: 'true'\n",
        ".minijenkin.yml:3:12: jobs.a: 'needs' names unknown job 'ghost'",
    ),
    PipelineFault(
        "dependency cycle",
        b"jobs:\n  a:\n    needs: [b]\n    steps:\n      - run: 'true'\n"
        b"  b:\n    needs: [a]\n    steps:\n      - run: 'true'\n",
        ".minijenkin.yml:3:12: jobs.a: 'needs' forms a cycle: a -> b -> a",
    ),
    PipelineFault(
        "misspelt key",
        b"jbos:\n  a:\n    steps:\n      - run: 'true'\n",
        ".minijenkin.yml:1:1: unknown key 'jbos'; did you mean 'jobs'?",
    ),
    PipelineFault(
        "broken expression",
        b"jobs:\n  a:\n    if: ${{ ((( }}\n    steps:\n      - run: 'true'\n",
        ".minijenkin.yml:3:17: jobs.a.if: invalid condition: expected a value, "
        "found the end of the expression",
    ),
    PipelineFault(
        "negative timeout",
        b"jobs:\n  a:\n    timeout-minutes: -5\n    steps:\n      - run: 'true'\n",
        ".minijenkin.yml:3:22: jobs.a: 'timeout-minutes' must be a number above 0 and at most 10080",
    ),
    PipelineFault(
        "binary file", b"\x00\xff\xfe\x00jobs", ".minijenkin.yml: the file is not valid UTF-8 (byte 1)"
    ),
    PipelineFault(
        "alias bomb",
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        ".minijenkin.yml:5:44: the document expands to more than 100000 nodes (check its aliases)",
    ),
    PipelineFault("empty file", b"", ".minijenkin.yml:1:1: the file is empty; it needs a 'jobs' key"),
]


def _plan_reason(db: psycopg.Connection, run_id: int) -> str:
    row = db.execute("SELECT reason FROM jobs WHERE run_id = %s AND kind = 'plan'", (run_id,)).fetchone()
    return row["reason"]


def test_pipeline_file_faults(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess]
) -> None:
    repo_id = create_repo(db, "acme/pipelines", git_repo.url)
    runs = {}
    for fault in PIPELINE_FAULTS:
        commit = git_repo.commit({".minijenkin.yml": fault.content}, f"Break: {fault.name}")
        runs[fault.name] = create_run(db, repo_id, commit=commit)
    good = git_repo.commit(
        {".minijenkin.yml": b"jobs:\n  ok:\n    steps:\n      - run: echo fine\n"}, "Fix the pipeline"
    )
    runs["valid file"] = create_run(db, repo_id, commit=good)
    worker = start_worker()

    try:
        wait_for(
            lambda: all(run_finished(db, run_id) for run_id in runs.values()),
            timeout=120,
            interval=0.2,
            message="every run to finish",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None

    for fault in PIPELINE_FAULTS:
        run_id = runs[fault.name]
        if CAPTURE:
            print(f"CAPTURE {fault.name!r}: {run_finished(db, run_id)} {_plan_reason(db, run_id)!r}")
        assert (fault.name, run_finished(db, run_id)) == (fault.name, "failed")
        assert (fault.name, _plan_reason(db, run_id)) == (fault.name, fault.reason)
    assert run_finished(db, runs["valid file"]) == "succeeded"
    assert worker.process is not None and worker.process.poll() is None


@dataclass(frozen=True)
class LogFault:
    """Bytes a step prints, and the log lines that must be stored for them."""

    name: str
    command: str
    lines: list[str]


LONG_LINE = 70_000
LOG_FAULTS = [
    LogFault("invalid utf-8", r"printf '\xff\xfeok\n'", ["\ufffd\ufffdok"]),
    LogFault("nul byte", r"printf 'a\0b\n'", ["a\u2400b"]),
    LogFault("carriage return progress", r"printf '10%%\r50%%\r100%%\n'", ["100%"]),
    LogFault("crlf ending", r"printf 'dos\r\n'", ["dos"]),
    LogFault("no final newline", "printf 'tail'", ["tail"]),
    LogFault("ansi colour", r"printf '\033[31mred\033[0m\n'", ["\x1b[31mred\x1b[0m"]),
    LogFault("surrogate bytes", r"printf '\xed\xa0\x80!\n'", ["\ufffd\ufffd\ufffd!"]),
    LogFault(
        "overlong line",
        f"head -c {LONG_LINE} /dev/zero | tr '\\0' x; echo",
        ["x" * 65536 + SPLIT_MARKER, "x" * (LONG_LINE - 65536)],
    ),
    LogFault("empty lines", r"printf '\n\n'", ["", ""]),
]


def test_log_stream_faults(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess]
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    graph = [script_job(f"case{index}", fault.command) for index, fault in enumerate(LOG_FAULTS)]
    run_id = plan_run(db, repo_id, commit, graph)
    worker = start_worker()

    try:
        wait_for(lambda: run_finished(db, run_id), timeout=60, interval=0.1, message="the run to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None

    assert run_finished(db, run_id) == "succeeded", worker.output()
    for index, fault in enumerate(LOG_FAULTS):
        rows = db.execute(
            "SELECT line FROM job_logs WHERE job_id = %s AND stream <> 3 ORDER BY seq",
            (job_id(db, run_id, f"case{index}"),),
        ).fetchall()
        assert (fault.name, [row["line"] for row in rows]) == (fault.name, fault.lines)

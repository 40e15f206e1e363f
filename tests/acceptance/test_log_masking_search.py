"""Secret masking by real workers, full-text search over stored logs, and the CLI."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from minijenkin.config import Settings
from minijenkin.logs.lines import SPLIT_MARKER
from tests.acceptance.test_live_logs import REPO, SECRET, start_run, step_lines, wait_finished
from tests.support import factories
from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.logs import store_lines
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, scrubbed_environment

PEM = "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nQfLhbd0bt3vQ2nX8yk5Q\n-----END TEST KEY-----"
SERVICE_ACCOUNT = json.dumps({"client_id": "svc-account-77", "private_key": "pk-hidden-value",
                              "port": 443, "kind": "sa"})


def start_run_with_secrets(client: httpx.Client, repo: GitRepo, pipeline: str,
                           secrets: dict[str, str]) -> int:
    """Register the repository with `secrets` stored through the API, then push `pipeline`."""
    commit = repo.commit({".minijenkin.yml": pipeline}, "Pipeline")
    response = client.post("/api/repos", json={"name": REPO, "url": repo.url,
                                                "webhook_secret": SECRET})
    assert response.status_code == 201, response.text
    repo_id = response.json()["id"]
    for name, value in secrets.items():
        stored = client.put(f"/api/repos/{repo_id}/secrets/{name}", json={"value": value})
        assert stored.status_code in (200, 201), stored.text
    body = encode(push_payload(full_name=REPO, clone_url=repo.url, after=commit))
    response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))
    assert response.status_code == 201, response.text
    return int(response.json()["run_id"])


def test_secret_values_are_masked(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    secrets = {"DEPLOY_TOKEN": "tok-1234-abcd", "SIGNING_KEY": PEM,
               "SERVICE_ACCOUNT": SERVICE_ACCOUNT}
    script = "\n".join([
        "echo 'token=tok-1234-abcd;'",
        f"printf '%s\\n' '{PEM}'",
        "echo 'id svc-account-77 key pk-hidden-value port 443 kind sa'",
        f"echo '{SERVICE_ACCOUNT}'",
        "echo 'tok-1234-abc is not the token'",
    ])
    # The job references each secret, so the worker receives (and masks) all three.
    pipeline = ("jobs:\n  deploy:\n    env:\n"
                + "".join(f"      {name}: ${{{{ secrets.{name} }}}}\n" for name in secrets)
                + "    steps:\n      - run: |\n"
                + "".join(f"          {line}\n" for line in script.splitlines()))
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run_with_secrets(client, git_repo, pipeline, secrets))
        job = [job for job in run["jobs"] if job["key"] == "deploy"][0]

    assert run["status"] == "succeeded", worker.output()
    assert step_lines(db, job["id"]) == [
        (1, "token=***;"),
        (1, "***"),
        (1, "***"),
        (1, "***"),
        (1, "***"),
        (1, "id *** key *** port 443 kind sa"),
        (1, "***"),
        (1, "tok-1234-abc is not the token"),
    ]
    dump = db.execute("SELECT string_agg(line, E'\\n') AS text FROM job_logs").fetchone()["text"]
    for fragment in ("tok-1234-abcd", "MIIBOgIBAAJBAKj34GkxFhD9", "svc-account-77", "pk-hidden-value"):
        assert fragment not in dump


def test_secret_with_trailing_line_break_is_masked(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Values as they arrive from a file: a final newline, or CR LF from Windows.
    secrets = {"NEWLINE_TOKEN": "tok-newline-5566\n", "CRLF_TOKEN": "tok-crlf-7788\r\n"}
    pipeline = ("jobs:\n  deploy:\n    env:\n"
                + "".join(f"      {name}: ${{{{ secrets.{name} }}}}\n" for name in secrets)
                + "    steps:\n      - run: |\n"
                + '          echo "newline=$NEWLINE_TOKEN"\n'
                + '          echo "crlf=$CRLF_TOKEN"\n')
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run_with_secrets(client, git_repo, pipeline, secrets))
        job = [job for job in run["jobs"] if job["key"] == "deploy"][0]

    assert run["status"] == "succeeded", worker.output()
    assert step_lines(db, job["id"]) == [
        (1, "newline=***"), (1, ""), (1, "crlf=***"), (1, "")]


def test_secret_across_long_line_cut_is_masked(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Lines longer than 64 KiB are stored in 64 KiB pieces. The token starts
    # 5 bytes before the first cut: in a whole line, and in a line whose
    # second half arrives 0.3 s later.
    secrets = {"DEPLOY_TOKEN": "tok-long-line-4321"}
    script = ("import os, sys, time; token = os.environ['DEPLOY_TOKEN']; "
              "out = sys.stdout.buffer; pad = 'x' * (65536 - 5); "
              "out.write(f'{pad}{token}\\n'.encode()); out.flush(); "
              "out.write(f'{pad}{token[:8]}'.encode()); out.flush(); time.sleep(0.3); "
              "out.write(f'{token[8:]} end\\n'.encode()); out.flush()")
    pipeline = ("jobs:\n  deploy:\n    env:\n"
                "      DEPLOY_TOKEN: ${{ secrets.DEPLOY_TOKEN }}\n"
                f'    steps:\n      - run: python3 -c "{script}"\n')
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run_with_secrets(client, git_repo, pipeline, secrets))
        job = [job for job in run["jobs"] if job["key"] == "deploy"][0]

    assert run["status"] == "succeeded", worker.output()
    lines = [text for _, text in step_lines(db, job["id"])]
    pad = "x" * (65536 - 5)
    assert "".join(text.removesuffix(SPLIT_MARKER) for text in lines) == (
        f"{pad}***{pad}*** end")
    for fragment in ("tok-", "-long-", "4321"):
        assert not any(fragment in text for text in lines), fragment


def test_secret_in_failed_step_name_is_masked(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # A default step name is the script's first line with its expressions
    # rendered. The failure message quotes the name with repr(), which
    # doubles the backslash, and becomes the job's reason in the API.
    secrets = {"DEPLOY_TOKEN": "tok\\back-5678"}
    pipeline = ("jobs:\n  deploy:\n    steps:\n"
                '      - run: test "${{ secrets.DEPLOY_TOKEN }}" = wrong\n')
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run_with_secrets(client, git_repo, pipeline, secrets))
        job = [job for job in run["jobs"] if job["key"] == "deploy"][0]

    assert run["status"] == "failed", worker.output()
    message = """step 'Run test "***" = wrong' failed with exit code 1"""
    assert job["reason"] == message
    rows = db.execute("SELECT line FROM job_logs WHERE job_id = %s ORDER BY seq", (job["id"],)).fetchall()
    lines = [row["line"] for row in rows]
    assert lines[1:] == ['▶ Run test "***" = wrong', message]
    stored_reason = db.execute("SELECT reason FROM jobs WHERE id = %s", (job["id"],)).fetchone()["reason"]
    assert stored_reason == message
    for text in (*lines, job["reason"], worker.output()):
        assert "back-5678" not in text


def _search_server(settings: Settings, database_url: str) -> ApiServer:
    fast = settings.model_copy(update={"log_index_interval_seconds": 0.2})
    return ApiServer(fast, database_url).start()


def _job_with_lines(db: psycopg.Connection, repo_id: int, worker_id, lines: list[str],
                    ref: str = "refs/heads/main") -> int:
    run_id = factories.create_run(db, repo_id, ref=ref)
    [job] = [job for job in factories.claim(db, worker_id) if job["run_id"] == run_id]
    store_lines(db, job, lines)
    return job["job_id"]


def test_search_ranks_hits_with_snippets(
    settings: Settings, database_url: str, db: psycopg.Connection,
) -> None:
    repo_id = factories.create_repo(db, name="acme/api")
    other_repo = factories.create_repo(db, name="acme/web")
    worker_id = factories.register_worker(db)
    filler = [f"compiling unit {n}" for n in range(30)]
    dense = _job_with_lines(db, repo_id, worker_id, [
        "database timeout while migrating", *filler,
        "retry: database timeout again", "giving up: database timeout <script>x</script>"])
    single = _job_with_lines(db, repo_id, worker_id, [*filler, "warning: database timeout"])
    scattered = _job_with_lines(db, repo_id, worker_id, ["database opened", *filler, "timeout"])
    other = _job_with_lines(db, other_repo, worker_id, ["database timeout elsewhere"],
                            ref="refs/heads/feature")
    tagged = _job_with_lines(db, repo_id, worker_id, ["<script>needle()</script> done"])
    server = _search_server(settings, database_url)
    try:
        with server.client() as client:
            def search(**params: str) -> list[dict]:
                response = client.get("/api/search", params=params)
                assert response.status_code == 200, response.text
                return response.json()["hits"]

            hits = wait_for(lambda: len(search(q="database timeout")) == 5 and search(
                q="database timeout"), timeout=30, message="the indexer to index every job")
            in_repo = search(q="database timeout", repo="acme/api")
            on_branch = search(q="database timeout", branch="feature")
            phrase = search(q='"timeout again"')
            excluded = search(q="database -timeout")
            future = search(q="database", since="2999-01-01T00:00:00Z")
            inside_tag = search(q="needle")
            bounded = client.get("/api/search", params={"q": "database timeout"}).json()["truncated"]
            unknown_repo = client.get("/api/search", params={"q": "x", "repo": "acme/none"})
            empty_query = client.get("/api/search", params={"q": ""})
            with server.client(token=None) as anonymous_client:
                anonymous = anonymous_client.get("/api/search", params={"q": "x"})
    finally:
        server.stop()

    assert [(hit["job_id"], hit["seq"]) for hit in hits] == [
        (dense, 1), (dense, 32), (dense, 33), (other, 1), (single, 31)]
    assert hits[0]["rank"] > hits[3]["rank"]
    assert hits[3]["rank"] >= hits[4]["rank"]
    assert scattered not in {hit["job_id"] for hit in hits}
    # Five chunks match, far below the search's work bounds.
    assert bounded is False
    top = hits[0]
    assert top["repo"] == "acme/api"
    assert top["ref"] == "refs/heads/main"
    assert top["job_key"] == "plan"
    assert top["attempt"] == 1
    assert top["stream"] == "stdout"
    assert top["snippet"] == "database timeout while migrating"
    assert top["snippet_html"] == "<mark>database</mark> <mark>timeout</mark> while migrating"
    assert top["job_url"] == f"/api/jobs/{dense}"
    assert top["log_url"] == f"/api/jobs/{dense}/logs?attempt=1&after=0"
    escaped = hits[2]
    assert escaped["snippet"] == "giving up: database timeout <script>x</script>"
    assert escaped["snippet_html"] == (
        "giving up: <mark>database</mark> <mark>timeout</mark> &lt;script&gt;x&lt;/script&gt;")
    assert {hit["job_id"] for hit in in_repo} == {dense, single}
    assert [hit["job_id"] for hit in on_branch] == [other]
    assert [(hit["job_id"], hit["seq"]) for hit in phrase] == [(dense, 32)]
    assert [(hit["job_id"], hit["seq"]) for hit in excluded] == [(scattered, 1)]
    assert future == []
    assert [(hit["job_id"], hit["seq"]) for hit in inside_tag] == [(tagged, 1)]
    assert inside_tag[0]["snippet"] == "<script>needle()</script> done"
    assert inside_tag[0]["snippet_html"] == (
        "&lt;script&gt;<mark>needle</mark>()&lt;/script&gt; done")
    assert unknown_repo.status_code == 404
    assert unknown_repo.json()["detail"] == "repository 'acme/none' does not exist"
    assert empty_query.status_code == 422
    assert empty_query.json()["field"] == "q"
    assert anonymous.status_code == 401


def test_search_finds_coloured_words(
    settings: Settings, database_url: str, db: psycopg.Connection,
) -> None:
    repo_id = factories.create_repo(db, name="acme/api")
    worker_id = factories.register_worker(db)
    job = _job_with_lines(db, repo_id, worker_id, [
        "\x1b[31mFAILED\x1b[0m tests/test_api.py::test_login",
        "\x1b[1;31merror\x1b[0m: linker exited with status 1",
        "\x1b]0;title\x07plain words"])
    server = _search_server(settings, database_url)
    try:
        with server.client() as client:
            def search(query: str) -> list[dict]:
                response = client.get("/api/search", params={"q": query})
                assert response.status_code == 200, response.text
                return response.json()["hits"]

            failed = wait_for(lambda: search("FAILED"), timeout=30,
                              message="the indexer to index the job")
            error = search("error")
            title = search("title")
    finally:
        server.stop()

    assert [(hit["job_id"], hit["seq"]) for hit in failed] == [(job, 1)]
    assert failed[0]["snippet"] == "FAILED tests/test_api.py::test_login"
    assert failed[0]["snippet_html"] == "<mark>FAILED</mark> tests/test_api.py::test_login"
    assert [(hit["job_id"], hit["seq"]) for hit in error] == [(job, 2)]
    assert error[0]["snippet_html"] == "<mark>error</mark>: linker exited with status 1"
    assert title == []


def _cli(api_server: ApiServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**scrubbed_environment(), "MINIJENKIN_API_URL": api_server.url,
           "MINIJENKIN_API_TOKEN": api_server.admin_token}
    return subprocess.run([sys.executable, "-m", "minijenkin", *args], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def test_cli_prints_and_follows_logs(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess], tmp_path: Path,
) -> None:
    script = (r"printf '\033[32mgreen\033[0m \033]0;title\007ok\n'; "
              r"for i in 1 2 3; do echo line $i; sleep 0.3; done")
    pipeline = f"jobs:\n  show:\n    steps:\n      - run: |\n          {script}\n"
    start_worker()
    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        job = wait_for(lambda: [j for j in client.get(f"/api/runs/{run_id}").json()["jobs"]
                                if j["key"] == "show"], timeout=60, message="job show")[0]
        followed = _cli(api_server, "logs", str(job["id"]), "--follow")
        wait_finished(client, run_id)
    printed = _cli(api_server, "logs", str(job["id"]))
    missing = _cli(api_server, "logs", "999999")

    assert followed.returncode == 0, followed.stderr
    followed_lines = followed.stdout.splitlines()
    assert followed_lines[0].startswith("Running job show (attempt 1) on ")
    assert followed_lines[1].startswith("▶ Run printf")
    # Not a terminal: colours and the title-setting OSC sequence are removed.
    assert followed_lines[2:] == ["green ok", "line 1", "line 2", "line 3", "Job succeeded"]
    assert followed.stderr.strip().endswith(
        f"attempt 1 of job {job['id']} ended: succeeded (exit code 0)")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == followed.stdout
    assert missing.returncode == 1
    assert "job 999999 does not exist" in missing.stderr


def test_cli_search_notes_truncated_search(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db, name="acme/cli")
    worker_id = factories.register_worker(db)
    # 1,001 chunks of 64 lines contain the word: one more than a search ranks.
    job_id = _job_with_lines(db, repo_id, worker_id,
                             [f"checkpoint {n}" for n in range(64 * 1001)])
    with api_server.client() as client:
        wait_for(lambda: client.get("/api/search", params={"q": "checkpoint"}).json()["truncated"],
                 timeout=60, interval=0.5, message="every chunk to be indexed")
    bounded = _cli(api_server, "search", "checkpoint", "--limit", "2")
    complete = _cli(api_server, "search", "checkpoint 64000")

    assert bounded.returncode == 0, bounded.stderr
    assert len(bounded.stdout.splitlines()) == 2
    assert bounded.stdout.startswith(f"acme/cli job {job_id} (")
    assert "only the newest logs were searched; add --repo, --branch or --since" in bounded.stderr
    assert complete.returncode == 0, complete.stderr
    assert complete.stdout.splitlines() == [
        f"acme/cli job {job_id} (plan) attempt 1 line 64001: checkpoint 64000"]
    assert "only the newest logs were searched" not in complete.stderr


def test_cli_search_checks_since(api_server: ApiServer) -> None:
    word = _cli(api_server, "search", "timeout", "--since", "yesterday")
    day = _cli(api_server, "search", "timeout", "--since", "2026-12-01")
    utc = _cli(api_server, "search", "timeout", "--since", "2026-12-01T08:00:00Z")

    assert word.returncode == 1
    assert word.stderr == ("error: invalid --since 'yesterday': use an ISO 8601 date or time, "
                           "e.g. 2026-12-01 or 2026-12-01T08:00:00Z\n")
    assert day.returncode == 0, day.stderr
    assert day.stderr == "no matching log lines\n"
    assert utc.returncode == 0, utc.stderr
    assert utc.stderr == "no matching log lines\n"


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """Read one line of the process's stdout, failing after `timeout` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "no output in time"
    return process.stdout.readline()


def test_cli_follow_spans_retries(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess], tmp_path: Path,
) -> None:
    counter = tmp_path / "attempts"
    gate = tmp_path / "gate"
    # Both jobs wait for the gate, at most 30 s, so the CLI connects during
    # attempt 1. `third` fails its first two attempts, `broken` both of its.
    wait_gate = f"for i in $(seq 300); do [ -e {gate} ] && break; sleep 0.1; done"
    pipeline = (
        "jobs:\n"
        "  third:\n"
        "    retry: {max: 2}\n"
        "    steps:\n"
        "      - run: |\n"
        f"          {wait_gate}\n"
        f"          n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo $n > {counter}\n"
        "          echo try $n; test $n -ge 3\n"
        "  broken:\n"
        "    retry: {max: 1}\n"
        "    steps:\n"
        "      - run: |\n"
        f"          {wait_gate}\n"
        "          echo broken; exit 3\n")
    env = {**scrubbed_environment(), "MINIJENKIN_API_URL": api_server.url,
           "MINIJENKIN_API_TOKEN": api_server.admin_token}
    start_worker()
    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        jobs = wait_for(lambda: {j["key"]: j["id"] for j in client.get(f"/api/runs/{run_id}").json()["jobs"]
                                 if j["key"] in ("third", "broken")} or None,
                        timeout=60, message="jobs third and broken")
        processes = {key: subprocess.Popen(
            [sys.executable, "-m", "minijenkin", "logs", str(job_id), "--follow"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for key, job_id in jobs.items()}
        try:
            first_lines = {key: _first_line(process, 60) for key, process in processes.items()}
            gate.touch()
            outputs = {key: process.communicate(timeout=60) for key, process in processes.items()}
        finally:
            for process in processes.values():
                process.kill()
        wait_finished(client, run_id)

    third_id, broken_id = jobs["third"], jobs["broken"]
    third_out, third_err = outputs["third"]
    broken_out, broken_err = outputs["broken"]
    assert first_lines["third"].startswith("Running job third (attempt 1) on ")
    assert first_lines["broken"].startswith("Running job broken (attempt 1) on ")
    assert processes["third"].returncode == 0, third_err
    assert [line for line in third_out.splitlines() if line.startswith("try ")] == [
        "try 1", "try 2", "try 3"]
    assert third_err.splitlines() == [
        f"attempt 1 of job {third_id} ended: failed (exit code 1)",
        f"job {third_id} will run again as attempt 2",
        f"attempt 2 of job {third_id} ended: failed (exit code 1)",
        f"job {third_id} will run again as attempt 3",
        f"attempt 3 of job {third_id} ended: succeeded (exit code 0)",
    ]
    assert processes["broken"].returncode == 1
    assert broken_out.splitlines().count("broken") == 2
    assert broken_err.splitlines() == [
        f"attempt 1 of job {broken_id} ended: failed (exit code 3)",
        f"job {broken_id} will run again as attempt 2",
        f"attempt 2 of job {broken_id} ended: failed (exit code 3)",
    ]


def test_cli_logs_of_unstarted_job(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db, name="acme/cli")
    run_id = factories.create_run(db, repo_id)
    with api_server.client() as client:
        cancelled = client.post(f"/api/runs/{run_id}/cancel")
        job_id = client.get(f"/api/runs/{run_id}").json()["jobs"][0]["id"]
    assert cancelled.status_code == 200, cancelled.text

    printed = _cli(api_server, "logs", str(job_id))
    followed = _cli(api_server, "logs", str(job_id), "--follow")

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == ""
    assert printed.stderr == f"job {job_id} never started: cancelled (cancelled by a user)\n"
    assert followed.returncode == 1
    assert followed.stdout == ""
    assert followed.stderr == f"job {job_id} never started: cancelled (cancelled by a user)\n"


def test_cli_follow_waits_for_parked_job(api_server: ApiServer, db: psycopg.Connection) -> None:
    """A job parked before its first attempt (waiting for a deploy lock) is followed until it ends."""
    repo_id = factories.create_repo(db, name="acme/cli")
    run_id = factories.create_run(db, repo_id)
    job_id = db.execute("UPDATE jobs SET status = 'waiting' WHERE run_id = %s RETURNING id",
                        (run_id,)).fetchone()["id"]
    env = {**scrubbed_environment(), "MINIJENKIN_API_URL": api_server.url,
           "MINIJENKIN_API_TOKEN": api_server.admin_token}
    process = subprocess.Popen([sys.executable, "-m", "minijenkin", "logs", str(job_id), "--follow"],
                               env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        running_while_parked = process.poll() is None
        with api_server.client() as client:
            cancelled = client.post(f"/api/jobs/{job_id}/cancel")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()

    assert running_while_parked is True
    assert cancelled.status_code == 200, cancelled.text
    assert process.returncode == 1
    assert out == ""
    assert err.splitlines() == [
        f"job {job_id} has not started yet: waiting",
        f"job {job_id} never started: cancelled (cancelled by a user)",
    ]

"""`minijenkin logs` and `minijenkin search`: job logs in a terminal, through the API.

Both talk to the API rather than to PostgreSQL, so they work from any
machine that has a token of scope `read`. `logs --follow` reads the same
Server-Sent Events stream as the dashboard and, after a dropped connection,
resumes from the last line it printed (Last-Event-ID). A stream covers one
attempt, so to follow a job that is retried, `logs --follow` polls the job
after each attempt and streams the next one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any, TextIO

import httpx
import typer
from httpx_sse import connect_sse

from minijenkin.config import DEFAULT_HOST, DEFAULT_PORT
from minijenkin.errors import InvalidInputError, MiniJenkinError, NotFoundError
from minijenkin.logs.render import for_terminal
from minijenkin.runs import ACTIVE_STATUSES

PAGE_LINES = 5000
RECONNECTS_MAX = 10
RECONNECT_DELAY_MAX_SECONDS = 5.0
# Polling of a job queued for another attempt: the first delay and the maximum.
RETRY_POLL_SECONDS = 0.5
RETRY_POLL_MAX_SECONDS = 5.0
# Final statuses after which `logs --follow` exits with status 0; any other
# (failed, cancelled, timed out, an attempt lost or handed back) gives 1.
SUCCESSFUL_STATUSES = frozenset({"succeeded", "skipped"})
HTTP_TIMEOUT_SECONDS = 30.0
# Dim text for Mini-Jenkin's own lines on a colour terminal.
_SYSTEM_STYLE = ("\x1b[2m", "\x1b[0m")

UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="MINIJENKIN_API_URL", show_default=False,
    help="Base URL of the Mini-Jenkin API. Default: http://127.0.0.1 at MINIJENKIN_PORT "
         "(3000 unless set), the address `minijenkin up` serves.")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="MINIJENKIN_API_TOKEN",
    help="API token of scope read or higher. Default, when --url is not given: the admin "
         "token that `minijenkin up` keeps in <data dir>/admin-token, if this user can read it.")]


class ApiRequestError(MiniJenkinError):
    """The API rejected the request."""


def _local_api() -> tuple[str, str | None]:
    """Return the loopback URL of the API that `minijenkin up` serves with these settings,
    and the admin token it keeps in the data directory if this user can read it."""
    from minijenkin.cli.common import load_cli_settings
    from minijenkin.supervisor import LOCAL_TOKEN_FILE

    try:
        settings = load_cli_settings()
    except MiniJenkinError:
        return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", None
    url = f"http://{DEFAULT_HOST}:{settings.port}"
    try:
        token = (settings.data_dir / LOCAL_TOKEN_FILE).read_text().strip() or None
    except OSError:
        token = None
    return url, token


def _client(url: str | None, token: str | None) -> httpx.Client:
    # The local admin token goes only to the local API, never to a URL the
    # user named.
    if url is None:
        url, local_token = _local_api()
        token = token or local_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers,
                        timeout=httpx.Timeout(HTTP_TIMEOUT_SECONDS, read=None))


@contextlib.contextmanager
def _api_errors(client: httpx.Client) -> Iterator[None]:
    """Turn a failure to reach the API into one clear error line."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ApiRequestError(
            f"cannot reach the API at {client.base_url}: {exc or type(exc).__name__}; start it "
            "with `minijenkin up`, or pass --url or set MINIJENKIN_API_URL") from exc


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if response.status_code == 404:
        raise NotFoundError(str(detail))
    hint = ""
    if response.status_code in (401, 403):
        hint = ("; pass --token or set MINIJENKIN_API_TOKEN to a token of scope read or "
                "higher (create one with `minijenkin token create --scope read`)")
    raise ApiRequestError(f"the API returned HTTP {response.status_code}: {detail}{hint}")


class LinePrinter:
    """Writes log lines to a terminal or a file, with escape sequences made safe."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = out.isatty()

    def line(self, line: dict[str, Any]) -> None:
        text = for_terminal(line["text"], color=self.color)
        if line["stream"] == "system" and self.color:
            text = f"{_SYSTEM_STYLE[0]}{text}{_SYSTEM_STYLE[1]}"
        self.out.write(text + "\n")


def print_page_by_page(client: httpx.Client, job_id: int, attempt: int | None,
                       printer: LinePrinter) -> int:
    """Print every line stored so far, one JSON page at a time; return the attempt printed.

    The attempt is 0 when the job has none yet.
    """
    after = 0
    while True:
        params: dict[str, int] = {"after": after, "limit": PAGE_LINES}
        if attempt is not None:
            params["attempt"] = attempt
        response = client.get(f"/api/jobs/{job_id}/logs", params=params)
        _raise_for_status(response)
        page = response.json()
        for line in page["lines"]:
            printer.line(line)
        # Pin the attempt of the first page: a retry starting meanwhile must
        # not switch the log half-way.
        attempt = page["attempt"] or attempt
        if len(page["lines"]) < PAGE_LINES:
            return int(page["attempt"])
        after = page["next_after"]


def follow(client: httpx.Client, job_id: int, attempt: int | None, printer: LinePrinter,
           err: TextIO) -> dict[str, Any]:
    """Print lines as they are stored until the attempt ends; return the `end` event's data.

    A dropped connection is reopened with the last seq printed as
    Last-Event-ID, up to RECONNECTS_MAX times in a row.
    """
    last_seq: int | None = None
    failures = 0
    delay = 0.2
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_seq is not None:
            headers["Last-Event-ID"] = str(last_seq)
        params = {"attempt": attempt} if attempt is not None else {}
        try:
            with connect_sse(client, "GET", f"/api/jobs/{job_id}/logs", params=params,
                             headers=headers) as source:
                _raise_for_status(source.response)
                for event in source.iter_sse():
                    failures = 0
                    if event.event == "line":
                        line = json.loads(event.data)
                        printer.line(line)
                        last_seq = line["seq"]
                        # Stay on this attempt when reconnecting.
                        attempt = line["attempt"]
                    elif event.event == "end":
                        end = json.loads(event.data)
                        printer.out.flush()
                        return end
        except httpx.TransportError as exc:
            failures += 1
            if failures > RECONNECTS_MAX:
                raise ApiRequestError(
                    f"lost the log stream {failures} times in a row: {exc}") from exc
            err.write(f"log stream interrupted ({exc}); reconnecting\n")
        else:
            # The server closed the stream without an `end` event (it is
            # stopping): reconnect and resume.
            failures += 1
            if failures > RECONNECTS_MAX:
                raise ApiRequestError("the API closed the log stream repeatedly before the end")
        printer.out.flush()
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)


def _get_job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}")
    _raise_for_status(response)
    return response.json()


def describe_unstarted(job_id: int, status: str, reason: str | None) -> str:
    """Describe a job without attempts, e.g. "job 7 never started: cancelled (cancelled by a user)"."""
    status_text = status.replace("_", " ")
    if status in ACTIVE_STATUSES:
        return f"job {job_id} has not started yet: {status_text}"
    if reason is None or reason == status:
        return f"job {job_id} never started: {status_text}"
    if reason.startswith(f"{status}:"):
        # Skip reasons start with the status, e.g. "skipped: needed job build failed".
        return f"job {job_id} never started: {reason}"
    return f"job {job_id} never started: {status_text} ({reason})"


def describe_end(job_id: int, end: dict[str, Any]) -> str:
    """Describe the `end` event of an attempt's log stream in one line."""
    if end["attempt"] == 0:
        return describe_unstarted(job_id, end["status"], end.get("reason"))
    outcome = end["status"].replace("_", " ")
    if end.get("exit_code") is not None:
        outcome += f" (exit code {end['exit_code']})"
    return f"attempt {end['attempt']} of job {job_id} ended: {outcome}"


def describe_unstarted_retry(job_id: int, attempt: int, job: dict[str, Any]) -> str:
    """Describe a job that ended before its next attempt started."""
    text = f"attempt {attempt} of job {job_id} never started: {job['status'].replace('_', ' ')}"
    if job.get("reason"):
        text += f" ({job['reason']})"
    return text


def follow_job(client: httpx.Client, job_id: int, printer: LinePrinter, err: TextIO) -> str:
    """Print every attempt of the job as it runs, retries included; return its final status.

    After each attempt the job is polled until it is final or its next
    attempt has started, with the delay doubling up to RETRY_POLL_MAX_SECONDS.
    The loop ends only when the job does, as a retry may wait for a backoff
    or a free worker.
    """
    job = _get_job(client, job_id)
    if job["attempt"] == 0 and job["status"] in ("waiting", "awaiting_approval"):
        # Parked for a deploy lock or an approval: the stream stays silent until it starts.
        err.write(describe_unstarted(job_id, job["status"], None) + "\n")
    end = follow(client, job_id, None, printer, err)
    while True:
        err.write(describe_end(job_id, end) + "\n")
        job = _get_job(client, job_id)
        if job["status"] not in ACTIVE_STATUSES and job["attempt"] <= end["attempt"]:
            return str(job["status"])

        next_attempt = end["attempt"] + 1
        if end["attempt"] > 0:
            err.write(f"job {job_id} will run again as attempt {next_attempt}\n")
        delay = RETRY_POLL_SECONDS
        while job["attempt"] < next_attempt:
            if job["status"] not in ACTIVE_STATUSES:
                # Ended, e.g. cancelled, before the next attempt started.
                err.write(describe_unstarted_retry(job_id, next_attempt, job) + "\n")
                return str(job["status"])
            printer.out.flush()
            time.sleep(delay)
            delay = min(delay * 2, RETRY_POLL_MAX_SECONDS)
            job = _get_job(client, job_id)
        end = follow(client, job_id, next_attempt, printer, err)


def logs(
    job_id: Annotated[int, typer.Argument(help="Job id, as shown by the API and the dashboard.")],
    attempt: Annotated[int | None, typer.Option(
        "--attempt", min=1, help="Attempt number. Default: the latest attempt (with --follow: "
                                 "it and every later one until the job ends).")] = None,
    follow_log: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines until the job ends, across retries "
                               "(with --attempt: until that attempt ends).")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print a job's log; with --follow, stream it live until the job ends.

    Exit status with --follow: 0 when the job (or the --attempt) ends
    succeeded or skipped, 1 when it ends any other way (failed, cancelled,
    timed out, an attempt lost) and when the command itself fails (e.g. the
    API cannot be reached).
    """
    printer = LinePrinter(sys.stdout)
    with _client(url, token) as client, _api_errors(client):
        if not follow_log:
            printed_attempt = print_page_by_page(client, job_id, attempt, printer)
            if printed_attempt == 0:
                job = _get_job(client, job_id)
                sys.stderr.write(describe_unstarted(job_id, job["status"], job["reason"]) + "\n")
            return
        if attempt is None:
            status = follow_job(client, job_id, printer, sys.stderr)
        else:
            end = follow(client, job_id, attempt, printer, sys.stderr)
            sys.stderr.write(describe_end(job_id, end) + "\n")
            status = end["status"]
    if status not in SUCCESSFUL_STATUSES:
        raise typer.Exit(1)


def search(
    query: Annotated[str, typer.Argument(
        help='Words to find, all of them unless joined by or, web-search style: "exact phrase", '
             '-excluded, word or word.')],
    repo: Annotated[str | None, typer.Option("--repo", help="Only this repository.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="Only runs of this branch.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only lines written at or after this ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Hits to show.")] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Search job logs; prints one hit per line: repository, job, line number and snippet."""
    if since is not None:
        try:
            dt.datetime.fromisoformat(since)
        except ValueError:
            raise InvalidInputError(f"invalid --since {since!r}: use an ISO 8601 date or time, "
                                    "e.g. 2026-12-01 or 2026-12-01T08:00:00Z") from None
    params: dict[str, str | int] = {"q": query, "limit": limit}
    for name, value in (("repo", repo), ("branch", branch), ("since", since)):
        if value is not None:
            params[name] = value
    with _client(url, token) as client, _api_errors(client):
        response = client.get("/api/search", params=params)
    _raise_for_status(response)
    body = response.json()
    hits = body["hits"]
    color = sys.stdout.isatty()
    for hit in hits:
        snippet = for_terminal(hit["snippet"], color=False)
        where = f"{hit['repo']} job {hit['job_id']} ({hit['job_key']}) attempt {hit['attempt']} " \
                f"line {hit['seq']}"
        if color:
            where = f"\x1b[1m{where}\x1b[0m"
        sys.stdout.write(f"{where}: {snippet}\n")
    if not hits:
        sys.stderr.write("no matching log lines\n")
    if body.get("truncated"):
        sys.stderr.write("only the newest logs were searched; add --repo, --branch or --since "
                         "to reach older ones\n")

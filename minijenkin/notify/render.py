"""Request bodies and headers for each kind of notification target.

Everything here is a pure function of the outbox row's payload (the facts
recorded when the event happened), so every attempt of a delivery sends the
same bytes and the same signature. Text from events (branch names, commit
messages, job names) is escaped for the receiving format: Slack mrkdwn
control characters, Discord markdown, and no Discord mentions at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from minijenkin import __version__
from minijenkin.errors import MiniJenkinError

USER_AGENT = f"Mini-Jenkin/{__version__}"
SIGNATURE_HEADER = "X-Minijenkin-Signature"
GITHUB_API_VERSION = "2022-11-28"
STATUS_DESCRIPTION_MAX = 140
DEFAULT_STATUS_CONTEXT = "minijenkin"
FAILED_JOBS_SHOWN = 10
# Documented limits of the receivers; longer text is cut with an ellipsis.
SLACK_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
DISCORD_CONTENT_MAX = 2000
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELD_MAX = 1024
# Title, description, field names and values and footer text of all embeds
# together (Discord's developer documentation, "Embed Limits").
DISCORD_EMBED_TOTAL_MAX = 6000

# Embed colours (0xRRGGBB as an integer, the form Discord expects).
COLOUR_SUCCESS = 0x2DA44E
COLOUR_FAILURE = 0xCF222E
COLOUR_CANCELLED = 0x6E7781
COLOUR_STARTED = 0x0969DA

_DISCORD_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()])")
# Headings and list items start a line with one of these.
_DISCORD_LINE_START = re.compile(r"^([#-])", re.MULTILINE)


class RenderError(MiniJenkinError):
    """The notification cannot be built for this target."""


@dataclasses.dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True)
class Summary:
    """Words that describe an event, shared by the chat formats."""

    subject: str
    verb: str
    ref_label: str
    colour: int
    outcome: str


def run_link(base_url: str, run_id: int) -> str:
    """Return the URL of a run's dashboard page."""
    return f"{base_url.rstrip('/')}/runs/{run_id}"


def sign(secret: str, body: bytes) -> str:
    """Return the X-Minijenkin-Signature value: `sha256=` and the hex HMAC-SHA256 of `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def is_header_token(value: str) -> bool:
    """Return whether `value` is visible ASCII (0x21 to 0x7E), which any HTTP header can carry."""
    return all("!" <= char <= "~" for char in value)


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def discord_escape(text: str) -> str:
    """Backslash-escape Discord markdown, so event text shows as typed."""
    escaped = _DISCORD_MARKDOWN.sub(r"\\\1", text)
    return _DISCORD_LINE_START.sub(r"\\\1", escaped)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip()


def _ref_label(run: Mapping[str, Any]) -> str:
    if run.get("branch"):
        return str(run["branch"])
    if run.get("tag"):
        return f"tag {run['tag']}"
    return str(run["ref"])


def summarize(payload: Mapping[str, Any]) -> Summary:
    """Describe an event by subject, verb and colour, e.g. 'acme/web #12' and 'failed'."""
    event = payload["event"]
    run = payload["run"]
    subject = f"{payload['repository']['name']} #{run['id']}"
    ref_label = _ref_label(run)
    if event == "run.succeeded":
        return Summary(subject, "succeeded", ref_label, COLOUR_SUCCESS, "succeeded")
    if event == "run.fixed":
        return Summary(subject, "is fixed", ref_label, COLOUR_SUCCESS, "succeeded")
    if event == "run.failed":
        return Summary(subject, "failed", ref_label, COLOUR_FAILURE, "failed")
    if event == "run.cancelled":
        return Summary(subject, "was cancelled", ref_label, COLOUR_CANCELLED, "cancelled")

    deployment = payload["deployment"]
    subject = f"Deploy of {subject} to {deployment['environment']}"
    if event == "deploy.started":
        return Summary(subject, "started", ref_label, COLOUR_STARTED, "running")
    status = str(deployment.get("status") or "finished")
    colour = {"succeeded": COLOUR_SUCCESS, "cancelled": COLOUR_CANCELLED}.get(status, COLOUR_FAILURE)
    return Summary(subject, status.replace("_", " "), ref_label, colour, status)


def _failed_jobs(payload: Mapping[str, Any]) -> list[str]:
    return [job["name"] for job in payload.get("jobs", [])
            if job["status"] in ("failed", "timed_out")]


def _jobs_line(payload: Mapping[str, Any]) -> str:
    jobs = payload.get("jobs", [])
    succeeded = sum(1 for job in jobs if job["status"] == "succeeded")
    return f"{succeeded}/{len(jobs)} succeeded"


def _failed_jobs_text(names: list[str], escape: Callable[[str], str]) -> str:
    shown = ", ".join(escape(name) for name in names[:FAILED_JOBS_SHOWN])
    if len(names) > FAILED_JOBS_SHOWN:
        shown += f" and {len(names) - FAILED_JOBS_SHOWN} more"
    return shown


def slack_body(payload: Mapping[str, Any], run_url: str) -> dict[str, Any]:
    """Build a Slack incoming-webhook message: fallback `text` plus Block Kit `blocks`."""
    summary = summarize(payload)
    run = payload["run"]
    commit = payload["commit"]
    reason = run.get("reason")

    headline = f"{summary.subject} {summary.verb} on {summary.ref_label}"
    text = slack_escape(headline + (f": {reason}" if reason else ""))
    main = (f"*<{slack_escape(run_url)}|{slack_escape(summary.subject)}>* {summary.verb} "
            f"on `{slack_escape(summary.ref_label)}`")
    if reason:
        main += "\n" + slack_escape(reason)

    fields = [
        f"*Commit*\n`{commit['sha'][:7]}` {slack_escape(_first_line(commit.get('message')))}",
        f"*Author*\n{slack_escape(commit.get('author') or '-')}",
        f"*Duration*\n{format_duration(run.get('duration_seconds'))}",
    ]
    if "deployment" in payload:
        fields.append(f"*Environment*\n{slack_escape(payload['deployment']['environment'])}")
    else:
        fields.append(f"*Jobs*\n{_jobs_line(payload)}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(main, SLACK_TEXT_MAX)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": truncate(field, SLACK_FIELD_MAX)} for field in fields]},
    ]
    failed = _failed_jobs(payload)
    if failed:
        blocks.append({"type": "context", "elements": [{
            "type": "mrkdwn",
            "text": truncate("Failed jobs: " + _failed_jobs_text(failed, slack_escape),
                             SLACK_FIELD_MAX),
        }]})
    return {"text": truncate(text, SLACK_TEXT_MAX), "blocks": blocks}


def discord_body(payload: Mapping[str, Any], run_url: str) -> dict[str, Any]:
    """Build a Discord webhook message: `content` plus one embed coloured by the outcome."""
    summary = summarize(payload)
    run = payload["run"]
    commit = payload["commit"]

    headline = discord_escape(f"{summary.subject} {summary.verb} on {summary.ref_label}")
    description_lines = [discord_escape(run["reason"])] if run.get("reason") else []
    message = _first_line(commit.get("message"))
    if message:
        description_lines.append(discord_escape(message))

    fields = [
        {"name": "Ref", "value": discord_escape(summary.ref_label), "inline": True},
        {"name": "Commit", "value": f"`{commit['sha'][:7]}`", "inline": True},
        {"name": "Author", "value": discord_escape(commit.get("author") or "-"), "inline": True},
        {"name": "Duration", "value": format_duration(run.get("duration_seconds")), "inline": True},
    ]
    if "deployment" in payload:
        fields.append({"name": "Environment",
                       "value": discord_escape(payload["deployment"]["environment"]),
                       "inline": True})
    else:
        fields.append({"name": "Jobs", "value": _jobs_line(payload), "inline": True})
    failed = _failed_jobs(payload)
    if failed:
        fields.append({"name": "Failed jobs", "value": _failed_jobs_text(failed, discord_escape),
                       "inline": False})
    for field in fields:
        field["value"] = truncate(str(field["value"]), DISCORD_FIELD_MAX)

    embed: dict[str, Any] = {
        "title": truncate(headline, DISCORD_TITLE_MAX),
        "url": run_url,
        "color": summary.colour,
        "fields": fields,
        "timestamp": payload["occurred_at"],
        "footer": {"text": "Mini-Jenkin"},
    }
    if description_lines:
        # The description gets what the other parts leave of the total.
        used = (len(embed["title"]) + len(embed["footer"]["text"])
                + sum(len(field["name"]) + len(field["value"]) for field in fields))
        embed["description"] = truncate("\n".join(description_lines),
                                        min(DISCORD_DESCRIPTION_MAX, DISCORD_EMBED_TOTAL_MAX - used))
    return {
        "content": truncate(headline, DISCORD_CONTENT_MAX),
        "embeds": [embed],
        # Event text must never ping anyone, whatever it contains.
        "allowed_mentions": {"parse": []},
    }


def webhook_body(payload: Mapping[str, Any], *, delivery_id: int, idempotency_key: str,
                 run_url: str) -> dict[str, Any]:
    """Build the generic JSON body: the event's facts, the delivery's identity and a dashboard link."""
    body: dict[str, Any] = {
        "event": payload["event"],
        "delivery": {"id": delivery_id, "idempotency_key": idempotency_key},
        "occurred_at": payload["occurred_at"],
        "repository": payload["repository"],
        "run": {**payload["run"], "url": run_url},
        "commit": payload["commit"],
        "jobs": payload["jobs"],
        "url": run_url,
    }
    if "deployment" in payload:
        body["deployment"] = payload["deployment"]
    else:
        body["previous_status"] = payload.get("previous_status")
    return body


def _status_description(payload: Mapping[str, Any]) -> str:
    summary = summarize(payload)
    run = payload["run"]
    if summary.outcome == "succeeded":
        text = f"Run #{run['id']} succeeded in {format_duration(run.get('duration_seconds'))}"
    elif summary.outcome == "cancelled":
        text = f"Run #{run['id']} was cancelled"
    else:
        text = f"Run #{run['id']} failed" + (f": {run['reason']}" if run.get("reason") else "")
    return truncate(text, STATUS_DESCRIPTION_MAX)


def github_status_body(payload: Mapping[str, Any], run_url: str, context: str) -> dict[str, Any]:
    """Build the body of GitHub's "create a commit status" request."""
    state = {"succeeded": "success", "failed": "failure", "cancelled": "error"}
    return {
        "state": state[summarize(payload).outcome],
        "target_url": run_url,
        "description": _status_description(payload),
        "context": context,
    }


def gitlab_status_body(payload: Mapping[str, Any], run_url: str, context: str) -> dict[str, Any]:
    """Build the body of GitLab's "set the pipeline status of a commit" request."""
    state = {"succeeded": "success", "failed": "failed", "cancelled": "canceled"}
    run = payload["run"]
    return {
        "state": state[summarize(payload).outcome],
        "ref": run.get("branch") or run.get("tag") or run["ref"],
        "name": context,
        "target_url": run_url,
        "description": _status_description(payload),
    }


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Base URL of dashboard links and default forge API URLs for commit statuses."""

    base_url: str
    github_api_url: str
    gitlab_api_url: str


def build_request(
    *,
    delivery_id: int,
    kind: str,
    event: str,
    payload: Mapping[str, Any],
    idempotency_key: str,
    options: Mapping[str, Any],
    repo_name: str,
    url: str | None,
    secret: str | None,
    endpoints: Endpoints,
) -> OutboundRequest:
    """Build the HTTP request that delivers one outbox row to its target.

    `url` and `secret` are the target's decrypted values. Raises RenderError
    when the target cannot take this delivery (e.g. a GitHub project name
    that is not owner/repository).
    """
    run_url = run_link(endpoints.base_url, int(payload["run"]["id"]))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Idempotency-Key": idempotency_key}

    if kind in ("slack", "discord", "webhook"):
        if url is None:
            raise RenderError(f"the {kind} target has no URL")
        if kind == "slack":
            body = encode(slack_body(payload, run_url))
        elif kind == "discord":
            body = encode(discord_body(payload, run_url))
        else:
            body = encode(webhook_body(payload, delivery_id=delivery_id,
                                       idempotency_key=idempotency_key, run_url=run_url))
            headers["X-Minijenkin-Event"] = event
            headers["X-Minijenkin-Delivery"] = str(delivery_id)
            if secret is not None:
                headers[SIGNATURE_HEADER] = sign(secret, body)
        return OutboundRequest("POST", url, headers, body)

    if secret is None:
        raise RenderError(f"the {kind} target has no API token")
    # Targets stored before tokens were checked may hold a line break or a
    # non-ASCII character, which httpx cannot send. Its error quotes the
    # token, and a retry cannot succeed. Forge tokens never contain spaces.
    if not is_header_token(secret):
        raise RenderError(f"the {kind} target's API token contains characters other than "
                          "visible ASCII, which an HTTP header cannot carry; remove the target "
                          "and add it again with a valid token")
    project = str(options.get("project") or repo_name)
    context = str(options.get("context") or DEFAULT_STATUS_CONTEXT)
    sha = str(payload["commit"]["sha"])

    if kind == "github-status":
        owner, _, name = project.partition("/")
        if not owner or not name or "/" in name:
            raise RenderError(
                f"GitHub project {project!r} is not owner/repository; set project on the target")
        base = (url or endpoints.github_api_url).rstrip("/")
        target = (f"{base}/repos/{urllib.parse.quote(owner, safe='')}/"
                  f"{urllib.parse.quote(name, safe='')}/statuses/{sha}")
        headers.update({"Accept": "application/vnd.github+json",
                        "Authorization": f"Bearer {secret}",
                        "X-GitHub-Api-Version": GITHUB_API_VERSION})
        return OutboundRequest("POST", target, headers,
                               encode(github_status_body(payload, run_url, context)))

    if kind == "gitlab-status":
        base = (url or endpoints.gitlab_api_url).rstrip("/")
        target = f"{base}/api/v4/projects/{urllib.parse.quote(project, safe='')}/statuses/{sha}"
        headers["PRIVATE-TOKEN"] = secret
        return OutboundRequest("POST", target, headers,
                               encode(gitlab_status_body(payload, run_url, context)))

    raise RenderError(f"unknown target kind {kind!r}")

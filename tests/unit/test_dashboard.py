"""Dashboard logic without a database: graph layout, session tokens, redirects, formatting."""

from __future__ import annotations

import datetime as dt

import pytest

from minijenkin.errors import InvalidInputError
from minijenkin.web import graph
from minijenkin.web.runs import parse_inputs
from minijenkin.web.session import Session, valid_token_text
from minijenkin.web.signin import safe_next
from minijenkin.web.templating import format_duration, ref_name, safe_link

NOW = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def job(job_id: int, key: str, needs: list[int] | None = None, *, kind: str = "script",
        status: str = "succeeded", matrix: str | None = None, **extra: object) -> dict:
    return {"id": job_id, "key": key, "name": key, "kind": kind, "status": status,
            "needs_ids": needs or [], "matrix_job": matrix, "attempt": 1, "started_at": None,
            "finished_at": None, "environment": None, **extra}


def columns(layout: graph.Layout) -> dict[str, int]:
    xs = sorted({unit.x for unit in layout.units})
    return {unit.key: xs.index(unit.x) for unit in layout.units}


def test_layout_places_jobs_by_longest_needs_chain() -> None:
    jobs = [job(1, "plan", kind="plan"), job(2, "lint"), job(3, "build"), job(4, "test", [3]),
            job(5, "deploy", [2, 4])]

    layout = graph.layout(jobs, now=NOW)

    assert columns(layout) == {"job:1": 0, "job:2": 1, "job:3": 1, "job:4": 2, "job:5": 3}
    assert sorted((edge.source, edge.target) for edge in layout.edges) == [
        ("job:1", "job:2"), ("job:1", "job:3"), ("job:2", "job:5"), ("job:3", "job:4"),
        ("job:4", "job:5")]
    for edge in layout.edges:
        start, end = edge.path.split(" C")[0], edge.path.split(" ")[-1]
        assert int(start[1:].split(",")[0]) < int(end.split(",")[0])


def test_layout_boxes_matrix_combinations_in_one_column() -> None:
    # max-parallel 1 chains the combinations; they still share one box.
    jobs = [job(1, "plan", kind="plan"), job(2, "test (a)", matrix="test"),
            job(3, "test (b)", [2], matrix="test", status="failed"),
            job(4, "report", [2, 3], status="skipped")]

    layout = graph.layout(jobs, now=NOW)

    units = {unit.key: unit for unit in layout.units}
    assert list(units) == ["job:1", "matrix:test", "job:4"]
    box = units["matrix:test"]
    assert [node.key for node in box.nodes] == ["test (a)", "test (b)"]
    assert box.status == "failed"
    assert box.summary == "1/2 succeeded"
    assert box.nodes[1].y > box.nodes[0].y
    assert all(box.y < node.y and node.y + node.height <= box.y + box.height for node in box.nodes)
    assert sorted((edge.source, edge.target) for edge in layout.edges) == [
        ("job:1", "matrix:test"), ("matrix:test", "job:4")]


def test_layout_orders_columns_to_avoid_crossings() -> None:
    # b2 needs a1 and a2 needs a1's sibling: the barycenter sweep puts each
    # job beside what it needs, whatever the creation order.
    jobs = [job(1, "a1"), job(2, "a2"), job(3, "b2", [2]), job(4, "b1", [1])]

    layout = graph.layout(jobs, now=NOW)

    rows = {node.key: node.y for unit in layout.units for node in unit.nodes}
    assert rows["b1"] == rows["a1"]
    assert rows["b2"] == rows["a2"]


def test_layout_node_text_is_shortened_and_detailed() -> None:
    started = NOW - dt.timedelta(minutes=3, seconds=5)
    jobs = [job(1, "x" * 40, status="running", started_at=started, attempt=2,
                environment="production")]

    node = graph.layout(jobs, now=NOW).units[0].nodes[0]

    assert node.label == "x" * 26 + "…"
    assert node.name == "x" * 40
    assert node.detail == "3m 05s · attempt 2 · → production"


def test_layout_of_no_jobs_is_empty() -> None:
    layout = graph.layout([], now=NOW)

    assert layout.units == []
    assert layout.edges == []


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0.42, "0.4s"), (12, "12s"), (185, "3m 05s"), (7440, "2h 04m"),
    (200_000, "2d 07h"), (-3, "0.0s"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_ref_name_and_safe_link() -> None:
    assert ref_name("refs/heads/feature/x") == "feature/x"
    assert ref_name("refs/tags/v1.0") == "v1.0"
    assert ref_name("refs/pull/3/head") == "refs/pull/3/head"
    assert safe_link("https://forge.example/pr/1") == "https://forge.example/pr/1"
    assert safe_link("javascript:alert(1)") is None
    assert safe_link(None) is None


@pytest.mark.parametrize(("target", "expected"), [
    ("/runs/3?x=1", "/runs/3?x=1"), (None, "/"), ("", "/"), ("https://evil.example", "/"),
    ("//evil.example/x", "/"), ("/\\evil.example", "/"), ("/a\nb", "/"),
])
def test_safe_next_keeps_redirects_on_the_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_csrf_token_depends_on_token_and_sign_in() -> None:
    first = Session(nonce="n" * 32, token="mjt_one")

    assert first.csrf_token == Session(nonce="n" * 32, token="mjt_one").csrf_token
    assert first.csrf_token != Session(nonce="m" * 32, token="mjt_one").csrf_token
    assert first.csrf_token != Session(nonce="n" * 32, token="mjt_two").csrf_token
    assert len(first.csrf_token) == 64


def test_valid_token_text_rejects_cookie_breaking_characters() -> None:
    assert valid_token_text("mjt_abc-DEF_123")
    assert not valid_token_text("")
    assert not valid_token_text("a b")
    assert not valid_token_text("a;b")
    assert not valid_token_text("x" * 513)


def test_parse_inputs_reads_name_value_lines() -> None:
    assert parse_inputs("a=1\n\n b = two words \nc=") == {"a": "1", "b": " two words ", "c": ""}
    with pytest.raises(InvalidInputError, match="invalid input line 'oops': use name=value") as error:
        parse_inputs("a=1\noops")
    assert error.value.field == "inputs"

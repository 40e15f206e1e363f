"""Matrix expansion: product, exclude, include, naming; with property-based checks."""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minijenkin.pipeline.events import Event
from minijenkin.pipeline.matrix import Matrix, expand, label
from minijenkin.pipeline.parser import parse_pipeline
from minijenkin.pipeline.plan import build_graph


def test_product_in_axis_order() -> None:
    matrix = Matrix(axes=(("python", ("3.11", "3.12")), ("os", ("linux", "arm"))))
    assert expand(matrix) == [
        {"python": "3.11", "os": "linux"}, {"python": "3.11", "os": "arm"},
        {"python": "3.12", "os": "linux"}, {"python": "3.12", "os": "arm"},
    ]


def test_exclude_partial_match() -> None:
    matrix = Matrix(axes=(("python", ("3.11", "3.12")), ("os", ("linux", "arm"))),
                    exclude=({"os": "arm", "python": "3.11"},))
    assert expand(matrix) == [
        {"python": "3.11", "os": "linux"}, {"python": "3.12", "os": "linux"}, {"python": "3.12", "os": "arm"},
    ]
    only_os = Matrix(axes=matrix.axes, exclude=({"os": "arm"},))
    assert expand(only_os) == [{"python": "3.11", "os": "linux"}, {"python": "3.12", "os": "linux"}]


def test_exclude_matches_part_of_mapping_or_list() -> None:
    arm = {"cpu": "arm", "bits": 64}
    x86 = {"cpu": "x86", "bits": 64}
    matrix = Matrix(axes=(("arch", (arm, x86)), ("flags", (["-O2", "-g"], ["-O0"]))),
                    exclude=({"arch": {"cpu": "arm"}, "flags": ["-O2"]},))
    assert expand(matrix) == [
        {"arch": arm, "flags": ["-O0"]},
        {"arch": x86, "flags": ["-O2", "-g"]},
        {"arch": x86, "flags": ["-O0"]},
    ]
    longer = Matrix(axes=matrix.axes, exclude=({"flags": ["-O0", "-g"]},))
    assert len(expand(longer)) == 4
    other_type = Matrix(axes=matrix.axes, exclude=({"arch": "arm"},))
    assert len(expand(other_type)) == 4


def test_include_follows_github_rules() -> None:
    # The example of GitHub's documentation on expanding matrix configurations.
    matrix = Matrix(
        axes=(("fruit", ("apple", "pear")), ("animal", ("cat", "dog"))),
        include=({"color": "green"}, {"color": "pink", "animal": "cat"},
                 {"fruit": "apple", "shape": "circle"}, {"fruit": "banana"},
                 {"fruit": "banana", "animal": "cat"}),
    )
    assert expand(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_include_only_matrix() -> None:
    matrix = Matrix(include=({"os": "linux", "cc": "gcc"}, {"os": "arm", "cc": "clang"}))
    assert expand(matrix) == [{"os": "linux", "cc": "gcc"}, {"os": "arm", "cc": "clang"}]
    assert matrix.keys == ("os", "cc")


def test_labels() -> None:
    assert label({"python": 3.1, "os": "linux", "debug": True}) == "3.1, linux, true"
    assert label({"config": {"b": 1, "a": [2]}}) == '{"a":[2],"b":1}'


def test_matrix_jobs_in_graph() -> None:
    pipeline = parse_pipeline("""\
jobs:
  test:
    strategy:
      matrix:
        python: ['3.11', '3.12']
        os: [linux]
    steps:
      - run: echo ${{ matrix.python }}
  named:
    name: Build on ${{ matrix.os }}
    strategy:
      matrix:
        os: [linux, arm]
    steps:
      - run: make
  plain-name:
    name: Lint
    strategy:
      matrix:
        tool: [ruff]
    steps:
      - run: make lint
  deploy:
    needs: [test, named]
    steps:
      - run: make deploy
""", file="ci.yml")
    graph = build_graph(pipeline, Event(kind="push", ref="refs/heads/main", commit="c" * 40))
    assert [(entry["key"], entry["name"]) for entry in graph] == [
        ("test (3.11, linux)", "test (3.11, linux)"),
        ("test (3.12, linux)", "test (3.12, linux)"),
        ("named (linux)", "Build on linux"),
        ("named (arm)", "Build on arm"),
        ("plain-name (ruff)", "Lint (ruff)"),
        ("deploy", "deploy"),
    ]
    assert graph[-1]["needs"] == ["test (3.11, linux)", "test (3.12, linux)", "named (linux)", "named (arm)"]
    assert graph[-1]["spec"]["needs"] == {"test": ["test (3.11, linux)", "test (3.12, linux)"],
                                          "named": ["named (linux)", "named (arm)"]}
    assert graph[0]["spec"]["matrix"] == {"python": "3.11", "os": "linux"}
    assert graph[0]["spec"]["strategy"] == {
        "job": "test", "fail_fast": True, "max_parallel": None,
        "context": {"fail-fast": True, "job-index": 0, "job-total": 2, "max-parallel": 2}}


def test_max_parallel_orders_combinations() -> None:
    pipeline = parse_pipeline("""\
jobs:
  build:
    needs: setup
    strategy:
      max-parallel: 2
      fail-fast: false
      matrix:
        n: [1, 2, 3, 4, 5]
    steps:
      - run: echo ${{ matrix.n }}
  setup:
    steps:
      - run: make
""", file="ci.yml")
    graph = {entry["key"]: entry for entry in build_graph(pipeline)}
    assert graph["build (1)"]["needs"] == ["setup"]
    assert graph["build (1)"]["condition"] is None
    assert graph["build (3)"]["needs"] == ["setup", "build (1)"]
    assert graph["build (3)"]["condition"] == "success()"
    assert graph["build (5)"]["needs"] == ["setup", "build (3)"]
    assert graph["build (5)"]["spec"]["needs"] == {"setup": ["setup"]}
    assert graph["build (5)"]["spec"]["strategy"] == {
        "job": "build", "fail_fast": False, "max_parallel": 2,
        "context": {"fail-fast": False, "job-index": 4, "job-total": 5, "max-parallel": 2}}


# -- properties -----------------------------------------------------------------------

values = st.one_of(st.integers(-5, 5), st.text(alphabet="abc", min_size=1, max_size=3), st.booleans())
axes = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                       st.lists(values, min_size=1, max_size=3, unique_by=lambda v: (type(v), v)),
                       min_size=1, max_size=3)


def as_matrix(raw: dict[str, list[Any]], **extra: Any) -> Matrix:
    return Matrix(axes=tuple((key, tuple(items)) for key, items in raw.items()), **extra)


@given(axes)
def test_product_size_and_uniqueness(raw: dict[str, list[Any]]) -> None:
    combinations = expand(as_matrix(raw))
    assert len(combinations) == math.prod(len(items) for items in raw.values())
    assert all(list(combination) == list(raw) for combination in combinations)
    assert all(combination[key] in raw[key] for combination in combinations for key in raw)
    keyed = {tuple((type(v).__name__, v) for v in combination.values()) for combination in combinations}
    assert len(keyed) == len(combinations)


@given(axes, st.data())
def test_exclude_removes_exactly_the_matching(raw: dict[str, list[Any]], data: st.DataObject) -> None:
    full = expand(as_matrix(raw))
    victim = data.draw(st.sampled_from(full))
    keys = data.draw(st.lists(st.sampled_from(list(raw)), min_size=1, unique=True))
    rule = {key: victim[key] for key in keys}
    remaining = expand(as_matrix(raw, exclude=(rule,)))

    def matches(combination: dict[str, Any]) -> bool:
        return all(type(combination[k]) is type(v) and combination[k] == v for k, v in rule.items())

    assert remaining == [combination for combination in full if not matches(combination)]
    assert len(remaining) < len(full)


@given(axes, values)
def test_include_with_new_key_extends_every_combination(raw: dict[str, list[Any]], extra: Any) -> None:
    combinations = expand(as_matrix(raw, include=({"extra": extra},)))
    assert len(combinations) == math.prod(len(items) for items in raw.values())
    assert all(combination["extra"] == extra for combination in combinations)


@given(axes)
def test_include_with_unknown_value_adds_one(raw: dict[str, list[Any]]) -> None:
    key = next(iter(raw))
    entry = {key: "not-a-value-of-the-axis", "extra": 1}
    combinations = expand(as_matrix(raw, include=(entry,)))
    assert len(combinations) == math.prod(len(items) for items in raw.values()) + 1
    assert combinations[-1] == entry


@given(st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True), st.integers(1, 4))
def test_max_parallel_never_exceeds_limit(numbers: list[int], parallel: int) -> None:
    """Following only ordering edges, no more than `parallel` combinations can be ready at once."""
    items = ", ".join(str(n) for n in numbers)
    pipeline = parse_pipeline(f"jobs:\n  t:\n    strategy:\n      max-parallel: {parallel}\n      matrix:\n"
                              f"        n: [{items}]\n    steps:\n      - run: 'true'\n", file="ci.yml")
    graph = build_graph(pipeline)
    ready = [entry for entry in graph if not entry["needs"]]
    assert len(ready) == min(parallel, len(numbers))
    chains = {entry["key"]: entry["needs"] for entry in graph}
    for needs in chains.values():
        assert len(needs) <= 1
        assert all(need in chains for need in needs)
    assert len(list(itertools.chain.from_iterable(chains.values()))) == max(0, len(numbers) - parallel)

"""Pipeline examples in the README and docs are accepted by the parser, so they cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minijenkin.pipeline.parser import parse_source

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md", ROOT / "docs" / "pipeline.md"]
BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", flags=re.MULTILINE | re.DOTALL)


STEPS = "    steps:\n      - run: echo ok\n"
MINIMAL_JOBS = "jobs:\n  example:\n" + STEPS


def as_pipeline(body: str) -> str | None:
    """Complete a documentation snippet into a whole pipeline file, or None if it is not one.

    Snippets show one level of the file: the top level, a job (indent 2), a
    job's keys (indent 4) or steps (indent 6). Each is wrapped in the
    smallest file around it.
    """
    lines = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    indent = len(lines[0]) - len(lines[0].lstrip())
    if indent == 0:
        if not re.match(r"(name|run-name|on|env|defaults|concurrency|permissions|jobs):", lines[0]):
            return None
        return body if re.search(r"^jobs:", body, flags=re.MULTILINE) else body + "\n" + MINIMAL_JOBS
    if indent == 2:
        return "jobs:\n" + body + "\n" + _stub_jobs(body)
    if indent == 4:
        steps = "" if re.search(r"^    steps:", body, flags=re.MULTILINE) else STEPS
        return "jobs:\n  example:\n" + body + "\n" + steps
    if indent == 6:
        return "jobs:\n  example:\n    steps:\n" + body
    return None


def _stub_jobs(body: str) -> str:
    """Add steps to a job snippet without them, and define the jobs its `needs` names."""
    stubs = "" if re.search(r"^    steps:", body, flags=re.MULTILINE) else STEPS
    defined = set(re.findall(r"^  ([\w-]+):", body, flags=re.MULTILINE))
    needed = {name.strip() for names in re.findall(r"needs: \[([^]]*)\]", body) for name in names.split(",")}
    for name in sorted(needed - defined):
        stubs += f"  {name}:\n{STEPS}"
    return stubs


def _examples() -> list[tuple[str, str]]:
    """Return (page:line, pipeline) for each YAML block that documents part of a pipeline file."""
    examples = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            indent = len(match.group(1))
            body = "\n".join(line[indent:] for line in match.group(2).splitlines())
            pipeline = as_pipeline(body)
            if pipeline is not None:
                line = text.count("\n", 0, match.start()) + 1
                examples.append((f"{page.name}:{line}", pipeline))
    return examples


EXAMPLES = _examples()


def test_docs_have_pipeline_examples() -> None:
    assert len(EXAMPLES) == 11


@pytest.mark.parametrize(("where", "text"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
def test_pipeline_example_parses(where: str, text: str) -> None:
    result = parse_source(text, file=".minijenkin.yml")

    assert [str(error) for error in result.errors] == []

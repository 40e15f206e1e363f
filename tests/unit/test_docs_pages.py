"""The docs and README link to files that exist and name real commands and metrics."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from minijenkin.cli import app
from minijenkin.metrics.figures import FIGURES

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A word followed by "/" or "." is a path or file name (`-g minijenkin deploy/systemd/...`).
COMMAND = re.compile(r"\bminijenkin ([a-z][a-z-]*(?: [a-z][a-z-]*)?)(?![\w/.-])")
IMAGE_MAX_BYTES = 150_000


def _commands() -> dict[str, set[str]]:
    root = typer.main.get_command(app)
    return {name: set(getattr(command, "commands", {})) for name, command in root.commands.items()}  # type: ignore[attr-defined]


def test_pages_link_to_existing_files() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_images_are_small() -> None:
    images = sorted((ROOT / "docs" / "images").glob("*.png"))

    assert [image.name for image in images] == ["job-log.png", "run-graph.png", "runs.png",
                                                "signin.png", "workers.png"]
    for image in images:
        assert image.stat().st_size < IMAGE_MAX_BYTES, image.name


def test_pages_name_real_commands() -> None:
    commands = _commands()
    for page in PAGES:
        for match in COMMAND.finditer(page.read_text()):
            name, _, sub = match.group(1).partition(" ")
            assert name in commands, f"{page.name}: minijenkin {match.group(1)}"
            if commands[name] and sub:
                assert sub in commands[name], f"{page.name}: minijenkin {match.group(1)}"


def test_operations_lists_every_metric() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(minijenkin_[a-z_]+)` \|([^|]*)\|", text, flags=re.MULTILINE)

    assert [name for name, _ in rows] == [figure.exposed_name for figure in FIGURES]
    for (_, labels), figure in zip(rows, FIGURES, strict=True):
        assert re.findall(r"`([a-z_]+)`", labels) == list(figure.labels), figure.metric

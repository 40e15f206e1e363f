"""Dockerfile, docker-compose.yml and the systemd units, checked without a container engine.

Each file must parse, run real `minijenkin` commands, and set only
environment variables that the settings class reads.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer
from ruamel.yaml import YAML

from minijenkin.cli import app
from minijenkin.config import DEFAULT_PORT
from tests.support.settings_env import setting_variables

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
COMMANDS = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
VARIABLE = re.compile(r"\bMINIJENKIN_[A-Z0-9_]+\b")


def _compose() -> dict[str, Any]:
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Parse a systemd unit into {section: [(key, value), ...]}, keeping repeated keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            assert stripped.endswith("]"), f"{path.name}: {stripped}"
            current = stripped[1:-1]
            sections[current] = []
            continue
        key, separator, value = stripped.partition("=")
        assert separator == "=", f"{path.name}: {stripped}"
        assert current is not None, f"{path.name}: {stripped}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in section if name == key]


def test_compose_services() -> None:
    services = _compose()["services"]

    assert sorted(services) == ["api", "migrate", "postgres", "worker"]
    assert services["postgres"]["image"] == "postgres:17"
    for name in ("api", "migrate", "worker"):
        assert services[name]["build"] == "."
        assert services[name]["command"][0] in COMMANDS
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["migrate"]


def test_compose_worker_scales() -> None:
    worker = _compose()["services"]["worker"]

    assert "container_name" not in worker
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker


def test_compose_health_checks() -> None:
    services = _compose()["services"]

    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"]["test"][1:3] == ["minijenkin", "doctor"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert services["api"]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_compose_named_volumes() -> None:
    compose = _compose()

    assert sorted(compose["volumes"]) == ["pgdata", "workspaces"]
    assert compose["services"]["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert compose["services"]["worker"]["volumes"] == ["workspaces:/var/lib/minijenkin/data"]


def test_compose_sets_real_settings() -> None:
    variables = setting_variables()
    services = _compose()["services"]

    for name in ("api", "migrate", "worker"):
        environment = services[name]["environment"]
        assert "MINIJENKIN_DATABASE_URL" in environment
        assert "MINIJENKIN_SECRET_KEY" in environment
        assert sorted(key for key in environment if key not in variables) == []
    assert services["api"]["environment"]["MINIJENKIN_HOST"] == "0.0.0.0"
    assert services["api"]["ports"] == [f"${{MINIJENKIN_PORT:-{DEFAULT_PORT}}}:3000"]


def test_compose_database_url_matches_postgres() -> None:
    services = _compose()["services"]
    url = services["api"]["environment"]["MINIJENKIN_DATABASE_URL"]
    postgres = services["postgres"]["environment"]

    assert url.startswith(f"postgresql://{postgres['POSTGRES_USER']}:")
    assert url.endswith(f"@postgres:5432/{postgres['POSTGRES_DB']}")


def test_dockerfile_instructions() -> None:
    instructions = _dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    variables = setting_variables()

    assert keywords.count("FROM") == 2
    assert ("ENTRYPOINT", '["minijenkin"]') in instructions
    assert ("CMD", '["api"]') in instructions
    assert ("EXPOSE", "3000") in instructions
    assert ("USER", "minijenkin") in instructions
    [healthcheck] = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    [environment] = [rest for keyword, rest in instructions if keyword == "ENV"]
    names = re.findall(r"(\w+)=", environment)
    assert sorted(name for name in names if name.startswith("MINIJENKIN_")) == [
        "MINIJENKIN_DATA_DIR", "MINIJENKIN_HOST", "MINIJENKIN_PORT"]
    assert sorted(name for name in names if name.startswith("MINIJENKIN_") and name not in variables) == []
    assert any("--constraint /tmp/constraints.txt" in rest for keyword, rest in instructions
               if keyword == "RUN")


def test_env_examples_set_real_settings() -> None:
    variables = setting_variables()
    for path in (ROOT / ".env.example", SYSTEMD / "minijenkin.env"):
        names = [line.partition("=")[0] for line in path.read_text().splitlines()
                 if line and not line.startswith("#")]
        minijenkin_names = [name for name in names if name.startswith("MINIJENKIN_")]
        assert minijenkin_names != []
        assert sorted(name for name in minijenkin_names if name not in variables) == [], path.name


def test_systemd_units() -> None:
    units = sorted(path.name for path in SYSTEMD.glob("*.service"))
    assert units == ["minijenkin-api.service", "minijenkin-migrate.service",
                     "minijenkin-worker@.service"]
    variables = setting_variables()

    for name, command in [("minijenkin-api.service", "api"), ("minijenkin-migrate.service", "migrate"),
                          ("minijenkin-worker@.service", "worker")]:
        unit = _unit(SYSTEMD / name)
        assert sorted(unit) == ["Install", "Service", "Unit"]
        service = unit["Service"]
        [exec_start] = _values(service, "ExecStart")
        argv = shlex.split(exec_start)
        assert argv[0].endswith("/bin/minijenkin")
        assert argv[1:] == [command]
        assert command in COMMANDS
        assert _values(service, "EnvironmentFile") == ["/etc/minijenkin/minijenkin.env"]
        assert _values(service, "User") == ["minijenkin"]
        for assignment in _values(service, "Environment"):
            assert assignment.partition("=")[0] in variables, f"{name}: {assignment}"
        assert _values(unit["Install"], "WantedBy") == ["multi-user.target"]


def test_systemd_worker_stops_gracefully() -> None:
    service = _unit(SYSTEMD / "minijenkin-worker@.service")["Service"]
    grace = [value for value in _values(service, "Environment")
             if value.startswith("MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS=")]

    assert grace == ["MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS=30"]
    assert int(_values(service, "TimeoutStopSec")[0]) > 30
    assert _values(service, "KillMode") == ["mixed"]


def test_deploy_files_name_only_real_variables() -> None:
    variables = setting_variables()
    for path in [ROOT / "Dockerfile", ROOT / "docker-compose.yml", ROOT / ".env.example",
                 *SYSTEMD.iterdir()]:
        unknown = sorted(set(VARIABLE.findall(path.read_text())) - set(variables))
        assert unknown == [], path.name


def test_dockerignore_keeps_context_small() -> None:
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")}

    assert {".git", ".venv", ".env", "**/__pycache__"} <= ignored
    copied = [rest.split()[:-1] for keyword, rest in _dockerfile_instructions()
              if keyword == "COPY" and not rest.startswith("--from")]
    assert copied == [["pyproject.toml", "constraints.txt", "README.md"], ["minijenkin"],
                      ["constraints.txt"]]

"""The wheel as a user installs it: a fresh virtual environment, `minijenkin up --demo`.

Nothing from the source tree is importable in the installed environment: the
commands run in an empty directory with the fresh environment's Python, so a
file missing from the wheel fails the test.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.support.workers import scrubbed_environment

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = ("sql", "web/templates", "web/static")
DEMO_TIMEOUT_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                    str(dist), str(ROOT)], check=True, timeout=300, capture_output=True)
    [built] = dist.glob("minijenkin-*.whl")
    return built


def test_wheel_contains_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = sorted(
        str(path.relative_to(ROOT)) for folder in PACKAGE_DATA
        for path in (ROOT / "minijenkin" / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")

    assert len(expected) > 40
    assert [name for name in expected if name not in names] == []
    assert "minijenkin/py.typed" in names


def test_wheel_pins_every_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata_name] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        [entry_points_name] = [name for name in archive.namelist()
                               if name.endswith(".dist-info/entry_points.txt")]
        entry_points = archive.read(entry_points_name).decode()

    runtime = [requirement for requirement in metadata.get_all("Requires-Dist")
               if "extra ==" not in requirement]
    assert len(runtime) >= 20
    assert [requirement for requirement in runtime if "==" not in requirement] == []
    assert "minijenkin = minijenkin.cli:main" in entry_points


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--constraint", str(ROOT / "constraints.txt"), str(wheel)],
                   check=True, timeout=600, capture_output=True)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(tmp_path / "data")}
    env.pop("PYTHONPATH", None)

    located = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import minijenkin; print(minijenkin.__file__)"],
                             cwd=workdir, env=env, check=True, capture_output=True, text=True)
    assert located.stdout.startswith(str(venv))

    port = _free_port()
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "minijenkin"), "up", "--demo", "--port", str(port), "--workers", "2"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
        outcome = None
        while outcome is None and time.monotonic() < deadline and process.poll() is None:
            outcome = re.search(r"demo run (\d+) (\w+)", log_path.read_text(errors="replace"))
            time.sleep(0.5)
        assert outcome is not None, log_path.read_text(errors="replace")
        assert outcome.group(2) == "succeeded", log_path.read_text(errors="replace")

        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log_path.read_text(errors="replace")
    assert code == 0, output
    for job in ("plan", "lint", "test", "package"):
        assert re.search(rf"^\s+{job}\s+succeeded in ", output, flags=re.MULTILINE), job
    assert "stopping embedded PostgreSQL" in output

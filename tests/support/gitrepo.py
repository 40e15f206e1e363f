"""Real git repositories for tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", "-c", "user.name=Test Author", "-c", "user.email=author@example.com", *args],
            cwd=self.path, check=True, capture_output=True, text=True,
        )
        return result.stdout.strip()

    def commit(self, files: dict[str, str | bytes], message: str = "Update") -> str:
        """Write `files` (path: text or raw bytes), commit them, return the new commit id."""
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            self.git("add", name)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

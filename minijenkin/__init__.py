"""Mini-Jenkin: a self-hosted CI/CD orchestrator whose only infrastructure is PostgreSQL."""

from importlib import metadata

try:
    __version__ = metadata.version("minijenkin")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

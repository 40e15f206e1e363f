"""Exceptions raised by Mini-Jenkin.

Every error derives from `MiniJenkinError`. The HTTP layer maps the classes to
status codes in one place (`minijenkin.api.errors`), so domain code never
imports the web framework.
"""

from __future__ import annotations


class MiniJenkinError(Exception):
    """Mini-Jenkin failed."""

    def __init__(
        self, message: str | None = None, *, field: str | None = None, **context: object
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        # The request field or setting the error is about, when there is one.
        self.field = field
        self.context = context
        super().__init__(self.message)


class ConfigurationError(MiniJenkinError):
    """The configuration is invalid."""


class DatabaseUnavailableError(MiniJenkinError):
    """The database cannot be reached."""


class MigrationError(MiniJenkinError):
    """A database migration failed."""


class NotFoundError(MiniJenkinError):
    """The requested object does not exist."""


class ConflictError(MiniJenkinError):
    """The request conflicts with the current state."""


class InvalidInputError(MiniJenkinError):
    """The input is invalid."""


class AuthenticationError(MiniJenkinError):
    """The request is not authenticated."""


class PermissionDeniedError(MiniJenkinError):
    """The caller is not allowed to do this."""


class PipelineError(MiniJenkinError):
    """The pipeline file is invalid."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        path: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        super().__init__(message)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class RemoteError(MiniJenkinError):
    """A remote git repository could not be read."""

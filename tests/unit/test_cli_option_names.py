"""CLI errors name the command-line option, never the API field, and keep quoted values."""

from __future__ import annotations

import pytest

from minijenkin.cli.common import option_names
from minijenkin.errors import InvalidInputError

OPTIONS = {"ref": "--ref", "webhook_secret": "--secret", "commit": "--commit"}


@pytest.mark.parametrize(("message", "field", "expected"), [
    ("webhook_secret is too short: use at least 8 characters", "webhook_secret",
     "--secret is too short: use at least 8 characters"),
    ("invalid commit '9bdad4': give the full commit id", "commit",
     "invalid --commit '9bdad4': give the full commit id"),
    ("repository 'acme/web' has no branch or tag 'ref'", "ref",
     "repository 'acme/web' has no branch or tag 'ref'"),
    ("ref 'ref' is not a branch; commit it first", "ref", "--ref 'ref' is not a branch; commit it first"),
])
def test_option_names_in_errors(message: str, field: str, expected: str) -> None:
    with pytest.raises(InvalidInputError) as raised, option_names(OPTIONS):
        raise InvalidInputError(message, field=field)

    assert raised.value.message == expected
    assert str(raised.value) == expected

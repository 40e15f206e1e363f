"""schemathesis against the served OpenAPI schema: no server error, no response
that breaks the schema.

Every operation gets FUZZ_EXAMPLES generated requests of valid data and as many
of invalid data (positive and negative modes), with the admin token,
against a loopback API with a real database. The API runs without
maintenance loops, so no notification leaves the machine, and operations
that contact a repository's remote (`git ls-remote` of a generated URL) are
left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from minijenkin.config import Settings
from tests.support.api import ApiServer

FUZZ_EXAMPLES = 100
REQUEST_TIMEOUT_SECONDS = 10
# These reach out to the repository's URL, which the fuzzer makes up.
REMOTE_OPERATIONS = {("POST", "/api/repos/{repo_id}/poll"), ("POST", "/api/runs")}


@pytest.fixture
def fuzz_server(settings: Settings, database_url: str) -> Iterator[ApiServer]:
    server = ApiServer(settings, database_url, maintenance=False).start()
    yield server
    server.stop()


def test_openapi_operations_fuzzed(fuzz_server: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzz_server.admin_token}"}
    response_checks = [checks.not_a_server_error, checks.response_schema_conformance,
                       checks.content_type_conformance, checks.status_code_conformance]
    tested = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, GenerationMode):
        if (operation.method.upper(), operation.path) in REMOTE_OPERATIONS:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzz_server.url, headers=headers,
                                 timeout=REQUEST_TIMEOUT_SECONDS)
            case.validate_response(response, checks=response_checks, headers=headers)

        try:
            fuzz()
        except Unsatisfiable:
            # An operation without parameters or body has no invalid data to send.
            assert mode is GenerationMode.NEGATIVE, operation.path
            continue
        except Exception as exc:
            raise AssertionError(f"{operation.method.upper()} {operation.path} "
                                 f"({mode.value} data): {exc}") from exc
        tested.append(operation.path)

    assert len(tested) >= 50

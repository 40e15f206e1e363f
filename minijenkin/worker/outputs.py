"""Job outputs (`jobs.<job_id>.outputs`): evaluated after a job's last step, read by the jobs that need it.

The worker of the job evaluates each output's template with the final
`steps` context and stores the values through mj_job_outputs_set_v1 before
it reports the end, so they are in place when a dependent job is claimed.
The worker of a dependent job reads them through mj_job_needs_outputs_v1
(minijenkin.worker.attempt_inputs) before the job's `if:` is evaluated. As
on GitHub, a value that contains a secret is not passed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from minijenkin.logs.masking import SecretMasker
from minijenkin.pipeline.expressions import ExpressionError, Scope, render_text

# The limit of all of a job's output values together, as JSON (GitHub documents 1 MB for job outputs).
MAX_OUTPUTS_BYTES = 1024 * 1024


def evaluate_outputs(templates: Mapping[str, Any], scope: Scope,
                     masker: SecretMasker) -> tuple[dict[str, str], list[str]]:
    """Evaluate a job's output templates; return the values to store and a message per value left out."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, template in templates.items():
        try:
            value = render_text(str(template), scope)
        except ExpressionError as exc:
            problems.append(f"output {name!r} is left unset: {exc.message}")
            continue
        if masker and masker.mask(value) != value:
            problems.append(f"output {name!r} is left unset because its value contains a secret")
            continue
        values[name] = value
    size = len(json.dumps(values).encode())
    if size > MAX_OUTPUTS_BYTES:
        problems.append(f"the job's outputs are left unset: together they have {size} bytes, more than "
                        f"the limit of {MAX_OUTPUTS_BYTES}")
        values = {}
    return values, problems

"""Shared parameter types whose bounds match the database columns behind them.

A value outside a column's range would make PostgreSQL raise an error, so
these reject it first, with a 422 that names the parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1

# Row ids (bigint identity columns) in paths; 0 and negative ids are valid
# input that finds no row (404).
RowId = Annotated[int, Path(ge=-BIGINT_MAX, le=BIGINT_MAX)]

"""Parsing of bench/scale.py's --configs option."""

from __future__ import annotations

import pytest

from bench.scale import parse_configs


def test_scale_configs_parse() -> None:
    assert parse_configs("4x50, 1x5") == [(4, 50), (1, 5)]


@pytest.mark.parametrize("text", ["4", "4x", "x5", "0x5", "4x0", "4*5"])
def test_scale_configs_reject_bad_item(text: str) -> None:
    with pytest.raises(ValueError, match="expected PROCESSESxSLOTS") as caught:
        parse_configs(text)

    assert repr(text) in str(caught.value)

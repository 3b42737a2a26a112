"""canary_triton/cli/arguments.py: each argument type takes its range and refuses the rest with a
message naming the limit (argparse prints it as the one-line usage error)."""

from __future__ import annotations

import argparse
import re

import pytest

from canary_triton import contract as C
from canary_triton.cli import arguments as A
from canary_triton.export.trtllm_engine import FP8_REFUSAL


@pytest.mark.parametrize(
    "parse, good, bad, message",
    [
        (A.positive_int, ("1", 1), "0", "must be >= 1, got 0"),
        (A.positive_float, ("0.5", 0.5), "0", "must be > 0, got 0"),
        (
            A.max_new_tokens,
            (str(C.MAX_NEW_TOKENS_LIMIT), C.MAX_NEW_TOKENS_LIMIT),
            "0",
            f"between 1 and {C.MAX_NEW_TOKENS_LIMIT}",
        ),
        (A.audio_seconds, ("40", 40.0), "40.5", f"must be in (0, {C.MAX_AUDIO_SECONDS:g}] seconds, got 40.5"),
        (A.probability, ("0.5", 0.5), "1", "must be in (0, 1), got 1"),
        (A.milliseconds, ("0", 0.0), "-1", "must be >= 0 ms, got -1"),
        (A.weight_quant, ("int8", "int8"), "int3", "must be one of"),
    ],
)
def test_each_type_takes_its_range_and_names_the_limit_otherwise(parse, good, bad, message):
    assert parse(good[0]) == good[1]
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse(bad)


def test_fp8_weights_are_refused_with_the_reason():
    with pytest.raises(argparse.ArgumentTypeError) as e:
        A.weight_quant("fp8")
    assert str(e.value) == FP8_REFUSAL

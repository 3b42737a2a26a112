"""canary_triton/export/parity.py without NeMo: the probe clips, a row's difference, the verdict
against each tolerance and the Markdown table. (The rows of a real export against NeMo are checked
in tests/test_export_pipeline.py and tests/test_cpu_llm_bf16.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from canary_triton.export.parity import (
    BF16_REL_TOL,
    FEATURE_TOL,
    INT8_REL_TOL,
    LOGIT_TOL,
    PROBE_SECONDS,
    diff,
    finish_report,
    parity_table,
    probe_clips,
)


def test_probe_clips_are_fixed_and_as_long_as_asked():
    clips = probe_clips(16000)
    assert [len(c) for c in clips] == [int(s * 16000) for s in PROBE_SECONDS]
    assert all(c.dtype == np.float32 and 0 < np.abs(c).max() < 1 for c in clips)
    np.testing.assert_array_equal(clips[1], probe_clips(16000)[1])


def test_diff_is_max_abs_and_relative_to_the_largest_reference_value():
    assert diff([1.0, 2.5], [1.0, 2.0]) == {"max_abs": 0.5, "rel": 0.25}
    assert diff([0.5], [0.0]) == {"max_abs": 0.5, "rel": 0.5}  # a zero reference: absolute
    assert diff([], []) == {"max_abs": 0.0, "rel": 0.0}


def _row(stage="encoder", max_abs=0.0, rel=0.0, lengths_equal=True, **kw):
    return {
        "stage": stage,
        "seconds": 1.0,
        "mode": "alone",
        "max_abs": max_abs,
        "rel": rel,
        "lengths_equal": lengths_equal,
        **kw,
    }


@pytest.mark.parametrize(
    "row, ok",
    [
        (_row(max_abs=FEATURE_TOL), True),
        (_row(max_abs=FEATURE_TOL * 2), False),
        (_row(stage="llm_merged", max_abs=LOGIT_TOL * 0.5), True),
        (_row(rel=1e-3), False),  # over the fp32 relative limit
        (_row(lengths_equal=False), False),
        (_row(stage="llm_merged", max_abs=1.0, rel=BF16_REL_TOL, precision="bf16"), True),
        (_row(stage="llm_merged", max_abs=1.0, rel=BF16_REL_TOL * 2, precision="bf16"), False),
        (_row(max_abs=1.0, rel=INT8_REL_TOL, precision="int8"), True),
        (_row(max_abs=1.0, rel=INT8_REL_TOL * 2, precision="int8"), False),
    ],
)
def test_each_row_is_judged_by_its_own_tolerance(row, ok):
    report = finish_report([row])
    assert report["rows"][0]["ok"] is ok and report["passed"] is ok


def test_the_report_fails_on_any_row_and_its_table_says_which():
    report = finish_report([_row(), _row(stage="projector", max_abs=1.0)])
    assert report["passed"] is False and report["tolerances"]["features_max_abs"] == FEATURE_TOL
    table = parity_table(report).splitlines()
    assert table[0].startswith("| stage |") and len(table) == 2 + 2 + 2  # header, rule, 2 rows, blank, tolerances
    assert table[2].endswith("| yes |") and table[3].startswith("| projector |") and table[3].endswith("| NO |")
    assert table[-1].endswith("Passed: False.")

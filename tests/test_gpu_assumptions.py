"""canary_triton/gpu/assumptions.py: the GPUs' data sheets and the checks on the assumptions."""

from __future__ import annotations

import pytest

from canary_triton.gpu.assumptions import DEFAULT_GPU, GPUS, H100_SXM, H200, Assumptions


def test_the_data_sheets():
    """The H200 is an H100 with faster and larger HBM: same compute, more bandwidth and memory."""
    assert GPUS == {"h100": H100_SXM, "h200": H200} and DEFAULT_GPU in GPUS
    assert H200.bf16_dense_tflops == H100_SXM.bf16_dense_tflops
    assert H200.hbm_tb_per_s > H100_SXM.hbm_tb_per_s and H200.memory_gb > H100_SXM.memory_gb


def test_assumptions_are_checked():
    with pytest.raises(ValueError, match="gemm_efficiency must be at most 1"):
        Assumptions(gemm_efficiency=1.5)
    with pytest.raises(ValueError, match="target_rtfx must be > 0"):
        Assumptions(target_rtfx=0)

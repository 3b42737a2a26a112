"""canary_triton/gpu/costs.py: a request's costs on the real Canary-Qwen-2.5B shapes, and the
in-flight batching arithmetic over them. A MODEL, not a measurement."""

from __future__ import annotations

import pytest

from canary_triton.gpu.assumptions import GPUS, Assumptions
from canary_triton.gpu.costs import (
    decode_step_seconds,
    encoder_flops_per_audio_second,
    iteration_seconds,
    kv_bytes_per_request,
    max_rate,
    padding_overhead,
    prefill_flops_per_audio_second,
    request_costs,
    requests_in_flight,
    reserved_output_len,
    weight_bytes_per_step,
)

from .test_gpu_model_shapes import real_shapes


def test_costs_of_the_real_model_on_an_h100():
    s, a, h100 = real_shapes(), Assumptions(), GPUS["h100"]
    # 12.5 frames/s x ~1.6 GFLOP/frame, + the attention term, + 10 % bucket padding (1 s of a 10 s clip)
    assert padding_overhead(a) == pytest.approx(0.1)
    assert 20e9 < encoder_flops_per_audio_second(s, a) < 24e9
    # (125 rows + 14 ids) x 2 x 1.41 B per 10 s
    assert prefill_flops_per_audio_second(s, a) == pytest.approx(139 * 2 * s.llm_non_embedding_params / 10, rel=0.02)
    # memory-bound decode step: (3.44 GB + 64 x 200 x 112 KiB) / (0.6 x 3.35 TB/s)
    step = decode_step_seconds(s, h100, a, 64, 200)
    assert step == pytest.approx((weight_bytes_per_step(s) + 64 * 200 * 114688) / (0.6 * 3.35e12))
    assert 2.3e-3 < step < 2.5e-3
    # a 10 s request holds its prompt + the reserved output (min(128, 8/s x 10 s + 16) = 96 tokens)
    assert reserved_output_len(10.0) == 96 and reserved_output_len(40.0) == 128
    assert kv_bytes_per_request(s, 10.0) == (125 + 14 + 96) * 114688


def test_littles_law_and_the_rate_bound_agree():
    costs = request_costs(real_shapes(), GPUS["h100"], Assumptions())
    for batch in (16, 64, 256, 1024):
        rate = max_rate(costs, batch)
        assert requests_in_flight(costs, rate) == pytest.approx(batch)
    assert iteration_seconds(costs, 1.0 / costs.per_request_s) is None  # the GPU cannot keep up
    assert requests_in_flight(costs, 2.0 / costs.per_request_s) is None

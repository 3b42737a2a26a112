"""canary_triton/export/repository_options.py: the repository's settings, checked at once, read
back from export.json, and the parameters they give each Python model."""

from __future__ import annotations

import pytest

from canary_triton import contract as C
from canary_triton.errors import CanaryTritonError
from canary_triton.export.repository_options import CPU_LLM_WEIGHTS, RepositoryOptions
from canary_triton.model_params import LlmParams, LongFormParams


def test_cpu_llm_weights_bad_value():
    with pytest.raises(CanaryTritonError, match="cpu llm weights 'both': expected one of shared, merged"):
        RepositoryOptions(cpu_llm_weights="both")


def test_a_bad_segmenter_value_is_one_line_naming_it():
    with pytest.raises(CanaryTritonError, match="long-form segmenter: "):
        RepositoryOptions(long_form_vad="webrtc")


def test_recorded_options_round_trip_and_refuse_unknown_fields():
    opts = RepositoryOptions(max_batch=8, cpu_llm_weights=CPU_LLM_WEIGHTS[1])
    assert RepositoryOptions.recorded(vars(opts)) == opts
    with pytest.raises(CanaryTritonError, match="options.repository has unknown field"):
        RepositoryOptions.recorded({**vars(opts), "turbo": True})


@pytest.mark.parametrize(
    "weights, llm_weights, adapter", [("shared", "llm_base", True), ("merged", "llm_merged", False)]
)
def test_each_llm_gets_its_weights_and_batch(weights, llm_weights, adapter):
    opts = RepositoryOptions(cpu_llm_weights=weights, llm_max_batch=5, llm_base_max_batch=3)
    llm, base = opts.model_params(C.LLM_MODEL), opts.model_params(C.LLM_BASE_MODEL)
    assert isinstance(llm, LlmParams) and (llm.weights, llm.asr_adapter, llm.max_batch) == (llm_weights, adapter, 5)
    assert (base.weights, base.asr_adapter, base.max_batch) == ("llm_base", False, 3)


def test_every_python_model_has_parameters_and_nothing_else_does():
    opts = RepositoryOptions(long_form_max_s=600.0)
    for model in C.ALL_MODELS:
        if model == C.ENSEMBLE_MODEL:
            with pytest.raises(CanaryTritonError, match="is not a Python model of the repository"):
                opts.parameters(model)
        else:
            assert isinstance(opts.parameters(model), dict)
    long = opts.model_params(C.LONG_FORM_MODEL)
    assert isinstance(long, LongFormParams) and long.max_seconds == 600.0

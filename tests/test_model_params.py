"""canary_triton.model_params: each Python model's parameters, rendered and parsed by one codec."""

from __future__ import annotations

from dataclasses import fields

import pytest

from benchmarks._common import parse_repository_options
from canary_triton import contract as C
from canary_triton.cli import export_options
from canary_triton.errors import CanaryTritonError
from canary_triton.export.repository import RepositoryOptions, describe
from canary_triton.longform.segmenter import SegmentOptions
from canary_triton.model_params import (
    ARTIFACTS,
    LLM_MODE_MAX_BATCH,
    AskParams,
    BlsParams,
    EncoderParams,
    LlmModeParams,
    LlmParams,
    LlmUnaryParams,
    LongFormParams,
    ModelParams,
    PostprocessorParams,
    PreprocessorParams,
    ProjectorParams,
    StreamParams,
    parse_field,
)
from canary_triton.runtime.cpu_profile import DEFAULT_LLM_NICE

from .sample_export import sample_manifest

ALL = (
    PreprocessorParams,
    EncoderParams,
    ProjectorParams,
    PostprocessorParams,
    LlmParams,
    LlmUnaryParams,
    StreamParams,
    LlmModeParams,
    LongFormParams,
    AskParams,
)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_defaults_and_a_changed_value_survive_the_round_trip(cls):
    assert cls.from_parameters(cls().parameters()) == cls()
    assert cls.from_parameters({}) == cls()  # a missing key takes the default
    assert cls().parameters()["artifacts"] == ARTIFACTS


def test_values_travel_as_the_strings_triton_holds():
    p = LlmParams(threads=None, nice=3, max_batch=8, exclude_input_in_output=False, weights="llm_merged")
    assert p.parameters() == {
        "artifacts": "../..",
        "threads": "auto",
        "nice": "3",
        "max_batch": "8",
        "exclude_input_in_output": "false",
        "weights": "llm_merged",
        "asr_adapter": "true",
        "cancellation_check_period_ms": "100",
        "send_timeout_s": "10.0",
    }
    assert LlmParams.from_parameters(p.parameters()) == p
    assert EncoderParams.from_parameters({"threads": "4"}).threads == 4
    assert EncoderParams.from_parameters({"threads": "auto"}).threads is None
    assert EncoderParams.from_parameters({"threads": ""}).threads is None
    assert PreprocessorParams.from_parameters({"vad_gate": "TRUE"}).vad_gate is True


def test_nested_segmenter_options_are_prefixed():
    seg = SegmentOptions(merge_s=12.0, vad="energy", vad_threads=2)
    params = LongFormParams(segment=seg, max_seconds=600.0).parameters()
    assert params["segment.merge_s"] == "12.0" and params["segment.vad"] == "energy"
    assert {k for k in params if k.startswith("segment.")} == {f"segment.{f.name}" for f in fields(SegmentOptions)}
    back = LongFormParams.from_parameters(params)
    assert back.segment == seg and back.max_seconds == 600.0


@pytest.mark.parametrize(
    "cls, params, message",
    [
        (LlmParams, {"max_batch": "many"}, "parameter max_batch is 'many'; expected an integer"),
        (EncoderParams, {"threads": "x"}, "parameter threads is 'x'; expected an integer or auto"),
        (PreprocessorParams, {"vad_gate": "yes"}, "parameter vad_gate is 'yes'; expected true or false"),
        (AskParams, {"max_seconds": "long"}, "parameter max_seconds is 'long'; expected a number"),
        (LlmParams, {"max_batch": "0"}, "max_batch is 0; it must be > 0"),
        (BlsParams, {"max_inflight": "-1"}, "max_inflight is -1; it must be > 0"),
        (LlmParams, {"weights": "llm_other"}, "weights 'llm_other': expected one of llm_base, llm_merged"),
        (LlmParams, {"nice": "20"}, "nice value is 20; it must be between 0"),
        (PreprocessorParams, {"mel_bucket_seconds": "99"}, "mel bucket"),
        (LongFormParams, {"segment.vad": "webrtc"}, "segment.vad must be one of silero, energy"),
        (StreamParams, {"threads": "2"}, r"unknown parameter\(s\) threads; StreamParams has artifacts, max_inflight"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_model_and_key(cls, params, message):
    with pytest.raises(CanaryTritonError, match=f"^model m: .*{message}") as e:
        cls.from_parameters(params, "m")
    assert "\n" not in str(e.value)


def test_each_python_model_of_the_repository_parses_its_rendered_parameters():
    """What canary_triton/export/repository.py renders is what each model reads back, with the options' values."""
    opts = RepositoryOptions(
        llm_max_batch=24, llm_base_max_batch=4, llm_nice=0, max_inflight=8, vad_gate=True, mel_bucket_s=1.0
    )
    parsers = {
        C.PREPROCESSOR_MODEL: PreprocessorParams,
        C.ENCODER_MODEL: EncoderParams,
        C.PROJECTOR_MODEL: ProjectorParams,
        C.POSTPROCESSOR_MODEL: PostprocessorParams,
        C.LLM_MODEL: LlmParams,
        C.LLM_BASE_MODEL: LlmParams,
        C.LLM_UNARY_MODEL: LlmUnaryParams,
        C.STREAM_MODEL: StreamParams,
        C.LLM_MODE_MODEL: LlmModeParams,
        C.LONG_FORM_MODEL: LongFormParams,
        C.LONG_FORM_STREAM_MODEL: LongFormParams,
        C.ASK_MODEL: AskParams,
    }
    decls = {d.name: d for d in describe(sample_manifest(), "cpu", opts) if d.backend == "python"}
    assert decls.keys() == parsers.keys()
    parsed = {name: parsers[name].from_parameters(d.parameters, name) for name, d in decls.items()}
    assert parsed == {name: opts.model_params(name) for name in decls}
    assert parsed[C.LLM_MODEL].max_batch == 24 and parsed[C.LLM_BASE_MODEL].max_batch == 4
    assert parsed[C.LLM_MODEL].asr_adapter and not parsed[C.LLM_BASE_MODEL].asr_adapter
    assert parsed[C.LLM_MODEL].nice == 0
    assert parsed[C.PREPROCESSOR_MODEL].vad_gate and parsed[C.LLM_UNARY_MODEL].vad_gate
    assert parsed[C.PREPROCESSOR_MODEL].mel_bucket_seconds == 1.0
    assert all(p.max_inflight == 8 for p in parsed.values() if isinstance(p, BlsParams))
    assert parsed[C.LONG_FORM_MODEL].segment == opts.long_form_segment() == parsed[C.PREPROCESSOR_MODEL].segment


def test_the_repository_options_take_their_defaults_from_the_models():
    opts = RepositoryOptions()
    assert opts.llm_max_batch == LlmParams().max_batch
    assert opts.llm_base_max_batch == LLM_MODE_MAX_BATCH
    assert opts.llm_nice == LlmParams().nice == DEFAULT_LLM_NICE
    assert opts.encoder_threads is EncoderParams().threads is None
    assert opts.max_inflight == BlsParams().max_inflight
    assert opts.long_form_max_s == LongFormParams().max_seconds == AskParams().max_seconds
    assert opts.long_form_concurrency == LongFormParams().segment_concurrency
    assert opts.mel_bucket_s == PreprocessorParams().mel_bucket_seconds
    assert opts.vad_gate is PreprocessorParams().vad_gate
    for name in (C.LLM_UNARY_MODEL, C.LLM_MODE_MODEL, C.LONG_FORM_MODEL):
        assert opts.model_params(name) == type(opts.model_params(name))()  # defaults all round


def test_cli_defaults_are_the_repository_options():
    assert export_options(["ckpt", "-o", "out"]).repository == RepositoryOptions()


def test_model_params_is_the_base_of_each():
    assert all(issubclass(cls, ModelParams) for cls in ALL)
    with pytest.raises(CanaryTritonError, match="not a Python model"):
        RepositoryOptions().model_params(C.ENSEMBLE_MODEL)


def test_a_repository_option_given_as_text_is_parsed_by_its_type():
    assert parse_field(RepositoryOptions, "encoder_threads", "auto") is None
    assert parse_repository_options(["encoder_threads=2", "vad_gate=false", "mel_bucket_s=1.5"]) == (
        ("encoder_threads", 2),
        ("vad_gate", False),
        ("mel_bucket_s", 1.5),
    )
    with pytest.raises(CanaryTritonError, match="parameter llm_max_batch is 'lots'; expected an integer"):
        parse_repository_options(["llm_max_batch=lots"])

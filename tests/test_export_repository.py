"""The repository generator: an ensemble whose wiring type-checks, for both profiles (the GPU one
is checked structurally; it is not loaded here), and the repository it writes."""

from __future__ import annotations

import pytest

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.errors import CanaryTritonError
from canary_triton.export.gpu_checks import parse_config
from canary_triton.export.pbtxt import render
from canary_triton.export.repository import describe
from canary_triton.export.repository_options import RepositoryOptions


def _manifest(exported_random) -> ExportManifest:
    return ExportManifest.read(exported_random)


def _gpu_manifest(exported_random, tmp_path) -> ExportManifest:
    m = _manifest(exported_random)
    engines = tmp_path / "engines"
    engines.mkdir()
    for arch in ("sm80", "sm90", "sm100"):
        for name in ("encoder", "projector"):
            (engines / f"{name}.{arch}.plan").write_bytes(b"plan")
    return m.with_files(
        encoder_plan="engines/encoder.sm90.plan",
        projector_plan="engines/projector.sm90.plan",
        trtllm_merged="trtllm/merged",
        trtllm_base="trtllm/base",
    )


def _check_wiring(decls) -> None:
    by_name = {d.name: d for d in decls}
    ens = by_name[C.ENSEMBLE_MODEL]
    produced: dict[str, tuple[str, str]] = {t.name: (t.dtype, "client") for t in ens.inputs}
    consumed: set[str] = set()
    for step in ens.steps:
        assert step.model in by_name, step.model
        model = by_name[step.model]
        ins = {t.name: t for t in model.inputs}
        for key, tensor in step.inputs.items():
            assert key in ins, (step.model, key)
            assert tensor in produced, (step.model, tensor)
            assert produced[tensor][0] == ins[key].dtype, (step.model, key, produced[tensor], ins[key].dtype)
            consumed.add(tensor)
        required = {t.name for t in model.inputs if not t.optional}
        assert required <= set(step.inputs), (step.model, required - set(step.inputs))
        outs = {t.name: t for t in model.outputs}
        for key, tensor in step.outputs.items():
            assert key in outs, (step.model, key)
            produced[tensor] = (outs[key].dtype, step.model)
    intermediate = {t for t, (_, src) in produced.items() if src != "client" and t not in {o.name for o in ens.outputs}}
    assert intermediate <= consumed, intermediate - consumed  # Triton rejects unused ensemble tensors
    assert {o.name for o in ens.outputs} <= set(produced)


def test_cpu_repository_wiring(exported_random):
    decls = describe(_manifest(exported_random), "cpu", RepositoryOptions())
    assert [d.name for d in decls] == list(C.ALL_MODELS)
    by_name = {d.name: d for d in decls}
    assert by_name[C.LLM_MODEL].decoupled and by_name[C.STREAM_MODEL].decoupled
    assert by_name[C.LONG_FORM_STREAM_MODEL].decoupled and not by_name[C.LONG_FORM_MODEL].decoupled
    assert by_name[C.LONG_FORM_MODEL].parameters["segment_model"] == C.ENSEMBLE_MODEL
    assert not by_name[C.LLM_UNARY_MODEL].decoupled  # the ensemble answers unary HTTP/gRPC
    assert [t.name for t in by_name[C.LLM_UNARY_MODEL].inputs] == [t.name for t in by_name[C.LLM_MODEL].inputs]
    _check_wiring(decls)


@pytest.mark.parametrize(
    "weights,llm_files,llm_adapter", [("shared", "llm_base", "true"), ("merged", "llm_merged", "false")]
)
def test_cpu_llm_weights(exported_random, weights, llm_files, llm_adapter):
    by_name = {
        d.name: d for d in describe(_manifest(exported_random), "cpu", RepositoryOptions(cpu_llm_weights=weights))
    }
    assert by_name[C.LLM_MODEL].parameters["weights"] == llm_files
    assert by_name[C.LLM_MODEL].parameters["asr_adapter"] == llm_adapter
    # LLM mode runs the base model without the adapter whichever copy ASR maps.
    assert by_name[C.LLM_BASE_MODEL].parameters["weights"] == "llm_base"
    assert by_name[C.LLM_BASE_MODEL].parameters["asr_adapter"] == "false"
    assert RepositoryOptions().cpu_llm_weights == "shared"


def test_cpu_llm_engines_run_below_the_encoders_priority(exported_random):
    by_name = {d.name: d for d in describe(_manifest(exported_random), "cpu", RepositoryOptions())}
    assert by_name[C.LLM_MODEL].parameters["nice"] == by_name[C.LLM_BASE_MODEL].parameters["nice"] == "10"
    assert "nice" not in by_name[C.ENCODER_MODEL].parameters
    # ASR rows and LLM-mode rows (long text prompts grow every row's KV cache) are sized apart.
    assert by_name[C.LLM_MODEL].parameters["max_batch"] == str(RepositoryOptions.llm_max_batch) == "32"
    assert by_name[C.LLM_BASE_MODEL].parameters["max_batch"] == str(RepositoryOptions.llm_base_max_batch) == "16"
    by_name = {d.name: d for d in describe(_manifest(exported_random), "cpu", RepositoryOptions(llm_nice=0))}
    assert by_name[C.LLM_MODEL].parameters["nice"] == "0"
    with pytest.raises(CanaryTritonError, match="nice value is 20; it must be between 0"):
        RepositoryOptions(llm_nice=20)


def test_gpu_repository_wiring_and_parameters(exported_random, tmp_path):
    m = _gpu_manifest(exported_random, tmp_path)
    cpu = {d.name: d for d in describe(_manifest(exported_random), "cpu", RepositoryOptions())}
    gpu = {d.name: d for d in describe(m, "gpu", RepositoryOptions(), tmp_path)}
    _check_wiring(list(gpu.values()))
    # Same names, tensor names and wiring in both profiles; only backends (and the table dtype) differ.
    assert cpu.keys() == gpu.keys()
    for name in cpu:
        assert [t.name for t in cpu[name].inputs] == [t.name for t in gpu[name].inputs], name
        assert [t.name for t in cpu[name].outputs if name != C.PROJECTOR_MODEL] == [
            t.name for t in gpu[name].outputs if name != C.PROJECTOR_MODEL
        ], name
    assert cpu[C.ENSEMBLE_MODEL].steps == gpu[C.ENSEMBLE_MODEL].steps
    assert gpu[C.ENCODER_MODEL].backend == "tensorrt_plan" and gpu[C.LLM_MODEL].backend == "tensorrtllm"
    llm = render(gpu[C.LLM_MODEL])
    for key in ("gpt_model_type", "gpt_model_path", "kv_cache_free_gpu_mem_fraction", "exclude_input_in_output"):
        assert f'key: "{key}"' in llm
    assert 'string_value: "inflight_fused_batching"' in llm
    assert "TYPE_BF16" in llm and "${" not in llm and "decoupled: true" in llm
    base = render(gpu[C.LLM_BASE_MODEL])
    # Absolute: the backend resolves gpt_model_path against tritonserver's working directory.
    assert f'string_value: "{(tmp_path / "trtllm" / "base").resolve()}"' in base
    assert f'string_value: "{(tmp_path / "trtllm" / "merged").resolve()}"' in llm
    enc = render(gpu[C.ENCODER_MODEL])
    for cc, arch in (("8.0", "sm80"), ("9.0", "sm90"), ("10.0", "sm100")):
        assert f'cc_model_filenames {{ key: "{cc}" value: "encoder.{arch}.plan" }}' in enc


def test_llm_mode_and_ask_answer_a_finish_reason_in_both_profiles(exported_random, tmp_path):
    """The LLM-mode entry points are Python BLS models in both profiles: they derive it from the
    llm's ids and lengths, which TensorRT-LLM's backend returns too."""
    profiles = {
        "cpu": describe(_manifest(exported_random), "cpu", RepositoryOptions()),
        "gpu": describe(_gpu_manifest(exported_random, tmp_path), "gpu", RepositoryOptions(), tmp_path),
    }
    for profile, decls in profiles.items():
        by_name = {d.name: d for d in decls}
        for model in (C.LLM_MODE_MODEL, C.ASK_MODEL):
            assert by_name[model].backend == "python", (profile, model)
            outs = {t.name: t for t in by_name[model].outputs}
            assert outs[C.FINISH_REASON.name] == C.FINISH_REASON, (profile, model)
            assert 'name: "finish_reason"\n    data_type: TYPE_STRING\n    dims: [ 1 ]' in render(by_name[model])


def test_gpu_repository_needs_plans(exported_random):
    with pytest.raises(CanaryTritonError, match="no TensorRT plans"):
        describe(_manifest(exported_random), "gpu", RepositoryOptions())


def test_written_cpu_repository(exported_random):
    repo = exported_random / "model_repository"
    for name in (m for m in C.ALL_MODELS if m != C.ENSEMBLE_MODEL):
        assert (repo / name / "1" / "model.py").is_file()
        assert (repo / name / "1" / "canary_bootstrap.py").is_file()
        text = (repo / name / "config.pbtxt").read_text()
        assert 'backend: "python"' in text and "${" not in text
    assert 'platform: "ensemble"' in (repo / C.ENSEMBLE_MODEL / "config.pbtxt").read_text()


def test_every_cpu_config_parses_as_a_triton_model_config(exported_random):
    """(The gpu profile's: tests/test_gpu_dry_run.py.)"""
    configs = {p.parent.name: parse_config(p) for p in (exported_random / "model_repository").glob("*/config.pbtxt")}
    assert len(configs) == 13
    for name, cfg in configs.items():
        assert cfg.name == name and cfg.max_batch_size == RepositoryOptions().max_batch
    # Mel is not ragged: the dynamic batcher groups equal (bucketed) shapes, as a TensorRT plan does.
    mel = next(t for t in configs[C.ENCODER_MODEL].input if t.name == C.MEL.name)
    assert not mel.allow_ragged_batch
    bucket = configs[C.PREPROCESSOR_MODEL].parameters["mel_bucket_seconds"].string_value
    assert float(bucket) == C.DEFAULT_MEL_BUCKET_SECONDS

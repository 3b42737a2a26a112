"""canary_triton/export/options.py: the export's options, each refusal naming the option and what is allowed,
and the precisions they resolve to. (The CLI's one-line errors for the same options are in
test_gpu_dry_run.py and test_export_pipeline.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from canary_triton.export.options import PROFILES, ExportOptions
from canary_triton.export.repository import RepositoryOptions
from canary_triton.export.tensorrt_engine import DEFAULT_GPU_ARCH, EngineOptions
from canary_triton.gpu.throughput import DEFAULT_GPU, GPUS
from canary_triton.runtime.cpu_profile import PrecisionChoice


def test_the_defaults():
    o = ExportOptions()
    assert (o.profile, o.llm_dtype, o.precision, o.cpu_encoder_precision) == ("cpu", "auto", "auto", "auto")
    assert o.parity and not o.dry_run and not o.require_native_precision and o.sized_by_model == ()
    assert (o.gpu_arch, o.gpu_model) == (DEFAULT_GPU_ARCH, DEFAULT_GPU) and PROFILES == ("cpu", "gpu")
    assert o.engine == EngineOptions() and o.repository == RepositoryOptions()
    with pytest.raises(AttributeError):
        o.profile = "gpu"  # frozen


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"profile": "tpu"}, "profile must be one of ('cpu', 'gpu'), got 'tpu'"),
        ({"llm_dtype": "int8"}, "llm_dtype must be auto, float32, bfloat16 or float16, got 'int8'"),
        ({"cpu_encoder_precision": "int4"}, "cpu encoder precision must be one of auto, fp32, int8, got 'int4'"),
        ({"cpu_encoder_precision": "int8", "profile": "gpu"}, "--cpu-encoder-precision int8 is for the cpu profile"),
        ({"dry_run": True}, "--dry-run renders the gpu profile only (--profile gpu), got --profile cpu"),
        ({"gpu_arch": "hopper"}, "--gpu-arch must look like sm80, sm90 or sm100, got 'hopper'"),
        ({"gpu_arch": "sm9"}, "--gpu-arch must look like sm80, sm90 or sm100, got 'sm9'"),
        ({"gpu_arch": "smXY"}, "got 'smXY'"),
        ({"gpu_model": "a100"}, f"--gpu-model must be one of {', '.join(GPUS)}, got 'a100'"),
        (
            {"profile": "gpu", "repository": RepositoryOptions(max_batch=32), "engine": EngineOptions(max_batch=16)},
            "--triton-max-batch 32 exceeds the encoder engines' --max-batch 16; it must be at most that",
        ),
    ],
)
def test_a_bad_option_is_refused_naming_it(kw, message):
    with pytest.raises(ValueError) as e:
        ExportOptions(**kw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_valid_combinations_are_kept_as_given():
    o = ExportOptions(profile="gpu", dry_run=True, gpu_arch="sm100", gpu_model="h200")
    assert (o.profile, o.dry_run, o.gpu_arch, o.gpu_model) == ("gpu", True, "sm100", "h200")
    same = ExportOptions(profile="gpu", repository=RepositoryOptions(max_batch=16), engine=EngineOptions(max_batch=16))
    assert same.repository.max_batch == same.engine.max_batch == 16  # at most the engines' batch: allowed
    cpu = ExportOptions(repository=RepositoryOptions(max_batch=64), engine=EngineOptions(max_batch=16))
    assert cpu.repository.max_batch == 64  # the cpu profile builds no engines: no such bound


@pytest.mark.parametrize(
    "llm_dtype,precision,want",
    [("float32", "fp32", "float32"), ("bfloat16", "bf16", "bfloat16"), ("float16", "float16", "float16")],
)
def test_an_explicit_llm_dtype_is_the_precision_and_says_so(llm_dtype, precision, want):
    o = ExportOptions(llm_dtype=llm_dtype, precision="bf16")  # llm_dtype wins over --precision
    assert o.precision_choice() == PrecisionChoice(precision, f"llm_dtype {llm_dtype} given explicitly")
    assert o.llm_dtype_name() == want


def test_the_cpu_profile_resolves_the_requested_precision():
    fp32 = ExportOptions(precision="fp32")
    assert fp32.precision_choice().precision == "fp32" and fp32.llm_dtype_name() == "float32"
    # auto follows the LLM: fp32 with an fp32 LLM, int8 with a bf16 one; an explicit one is kept
    assert fp32.encoder_precision_choice().precision == "fp32"
    assert fp32.encoder_precision_choice(PrecisionChoice("bf16", "x")).precision == "int8"
    assert ExportOptions(precision="fp32", cpu_encoder_precision="int8").encoder_precision_choice().precision == "int8"
    # a choice made once is passed in, not made again
    assert fp32.llm_dtype_name(PrecisionChoice("bf16", "given")) == "bfloat16"


def test_the_gpu_profile_is_bf16_and_its_encoder_the_engines_precision():
    o = ExportOptions(profile="gpu", engine=EngineOptions(precision="fp16"))
    assert o.precision_choice() == PrecisionChoice("bf16", "gpu profile: TensorRT-LLM engines in bf16")
    assert o.encoder_precision_choice() == PrecisionChoice("fp16", "gpu profile: the TensorRT encoder in --precision")
    assert o.llm_dtype_name() == "bfloat16"
    assert ExportOptions(profile="gpu", llm_dtype="float16").llm_dtype_name() == "float16"


def test_importing_it_loads_no_torch():
    """The CLI builds the options before it imports the export pipeline."""
    code = "import sys, canary_triton.export.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"

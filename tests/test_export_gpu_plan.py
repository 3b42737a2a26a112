"""The GPU steps' real code, short of TensorRT itself: profiles, table sizing, build settings.

TensorRT and TensorRT-LLM are not installable on CPU machines; the engine builds run in NVIDIA's
container. What does not need them is tested here; their absence is tested in test_export_pipeline.
"""

from __future__ import annotations

import pytest

from canary_triton import contract
from canary_triton.export.tensorrt_engine import EngineOptions, encoder_profiles
from canary_triton.export.trtllm_engine import (
    PLUGIN_SETTINGS, LlmEngineOptions, build_config_kwargs, trtllm_build_command,
)


def test_encoder_profiles_cover_the_40s_limit():
    opts = EngineOptions(max_batch=16, opt_batch=8, max_audio_seconds=40.0, opt_audio_seconds=10.0)
    shapes = encoder_profiles(opts, contract.MelParams(), contract.Subsampling(), encoder_dim=1024)
    lo, opt, hi = shapes["encoder"]["mel"]
    assert lo == (1, 128, 1) and opt == (8, 128, 1001) and hi == (16, 128, 4001)
    assert shapes["encoder"]["mel_length"] == ((1,), (8,), (16,))
    # 40 s -> 4001 mel columns -> 501 encoder frames in the padded tensor (500 valid).
    assert shapes["projector"]["encoded"] == ((1, 1, 1024), (8, 126, 1024), (16, 501, 1024))


def test_engine_options_are_checked():
    with pytest.raises(ValueError, match="precision"):
        EngineOptions(precision="int8")
    with pytest.raises(ValueError, match="opt_batch"):
        EngineOptions(max_batch=4, opt_batch=8)
    with pytest.raises(ValueError, match="opt_audio_seconds"):
        EngineOptions(max_audio_seconds=10.0, opt_audio_seconds=20.0)


def test_llm_engine_sizing_from_the_contract():
    opts = LlmEngineOptions(max_batch=64, max_audio_frames=500, prompt_tokens=64, max_new_tokens=512)
    k = build_config_kwargs(opts)
    assert k["max_prompt_embedding_table_size"] == 64 * 500  # the backend's per-request cap is 500 rows
    assert k["max_input_len"] == max(564, contract.MAX_TEXT_PROMPT_TOKENS)
    assert k["max_seq_len"] == k["max_input_len"] + 512
    assert k["strongly_typed"] is True
    assert PLUGIN_SETTINGS == {"remove_input_padding": True, "paged_kv_cache": True, "use_paged_context_fmha": True}


def test_trtllm_build_command_line():
    cmd = trtllm_build_command("ckpt", "engine", LlmEngineOptions(max_batch=8, dtype="bfloat16"))
    assert cmd[0] == "trtllm-build"
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["--max_prompt_embedding_table_size"] == str(8 * 500)
    assert flags["--kv_cache_type"] == "paged" and flags["--remove_input_padding"] == "enable"
    assert flags["--gemm_plugin"] == "bfloat16"


def test_llm_engine_options_are_checked():
    with pytest.raises(ValueError, match="weight_quant"):
        LlmEngineOptions(weight_quant="int3")
    with pytest.raises(ValueError, match="dtype"):
        LlmEngineOptions(dtype="float32")

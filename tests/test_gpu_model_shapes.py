"""canary_triton/gpu/model_shapes.py: the real Canary-Qwen-2.5B shapes from its configs (the sizes
are written here, in the test, and nowhere in the library), the parameter formulas against the
bundled checkpoint's tensors, and the shapes a gpu export recorded, read back field by field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from canary_triton.checkpoint.reader import inspect_checkpoint, read_weight_shapes
from canary_triton.errors import CheckpointError
from canary_triton.gpu import throughput as gt
from canary_triton.gpu.assumptions import H100_SXM, Assumptions
from canary_triton.gpu.costs import kv_bytes_per_token, weight_bytes_per_step
from canary_triton.gpu.model_shapes import SHAPES, ModelShapes

from .sample_export import sample_manifest

#: Canary-Qwen-2.5B: FastConformer 32 x d_model 1024 (the HF config.json) and Qwen3-1.7B's config.json.
REAL_ENCODER = {
    "d_model": 1024,
    "n_layers": 32,
    "n_heads": 8,
    "ff_expansion_factor": 4,
    "conv_kernel_size": 9,
    "subsampling": "dw_striding",
    "subsampling_factor": 8,
    "subsampling_conv_channels": 256,
}
REAL_QWEN3 = {
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "max_position_embeddings": 40960,
}
REAL_PROMPT_TEXT_IDS = 14  # 15 ASR prompt ids, one of them the audio placeholder


def real_shapes() -> ModelShapes:
    salm = {
        "perception": {
            "encoder": REAL_ENCODER,
            "preprocessor": {"features": 128, "sample_rate": 16000, "window_size": 0.025, "window_stride": 0.01},
        }
    }
    return ModelShapes.from_configs(salm, REAL_QWEN3, REAL_PROMPT_TEXT_IDS)


def test_real_shapes_match_the_published_sizes():
    s = real_shapes()
    assert s.frames_per_audio_second == 12.5 and s.max_table_rows == 501
    assert 0.80e9 < s.encoder_params < 0.82e9  # "~0.8 B parameters (incl. subsampling)"
    assert 1.40e9 < s.llm_non_embedding_params < 1.42e9  # Qwen3-1.7B without its 311 M embedding
    assert s.lm_head_params == s.embedding_params == 151936 * 2048  # tied
    assert kv_bytes_per_token(s) == 2 * 28 * 8 * 128 * 2 == 112 * 1024
    assert weight_bytes_per_step(s) == pytest.approx(3.44e9, rel=0.01)


def test_parameter_formulas_count_the_bundled_checkpoints_tensors(tiny_trained_dir):
    """From the config alone, exactly the parameters stored (BatchNorm statistics and the LoRA are not)."""
    info = inspect_checkpoint(tiny_trained_dir)
    shapes = read_weight_shapes(info.paths.weights)

    def count(prefix, skip=()):
        total = 0
        for name, shape in shapes.items():
            if name.startswith(prefix) and not any(k in name for k in skip):
                n = 1
                for d in shape:
                    n *= d
                total += n
        return total

    s = ModelShapes.from_checkpoint(info)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert s.encoder_params == count("perception.encoder.", buffers)
    assert s.projector_params == count("perception.proj.")
    layers = "llm.base_model.model.model."
    assert s.llm_non_embedding_params == count(layers, ("lora_", "embed_tokens"))
    assert s.embedding_params == count("embed_tokens.")


def test_recorded_shapes_are_read_back_checked_field_by_field(tiny_trained_dir):
    """ModelShapes.from_manifest reads export.json's throughput_model.shapes as the manifest's
    own sections are read: a missing or mistyped field is one line naming its path."""

    shapes = ModelShapes.from_checkpoint(inspect_checkpoint(tiny_trained_dir))
    d = gt.derive_gpu_defaults(shapes, H100_SXM, Assumptions())
    rec = gt.record(shapes, "h100", Assumptions(), d, ())
    m = replace(sample_manifest(), throughput_model=rec)
    assert ModelShapes.from_manifest(m) == shapes
    broken = {**rec, SHAPES: {**rec[SHAPES], "encoder_layers": "two"}}
    with pytest.raises(
        CheckpointError, match=r"throughput_model\.shapes\.encoder_layers is \"two\", expected an integer"
    ):
        ModelShapes.from_manifest(replace(m, throughput_model=broken))
    with pytest.raises(CheckpointError, match="not a gpu export"):
        ModelShapes.from_manifest(sample_manifest())

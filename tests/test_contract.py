"""Frame-count arithmetic and parameters of the contract against NeMo's own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.checkpoint.reader import inspect_checkpoint

# 0.1 s .. 40 s, with lengths that are not multiples of the hop and the edges around them.
LENGTHS = sorted(
    {
        1,
        159,
        160,
        161,
        319,
        320,
        1599,
        1600,
        1601,
        2399,
        4000,
        16000,
        16001,
        16159,
        117_123,
        176_000,
        320_000,
        639_999,
        640_000,
    }
    | set(np.random.default_rng(0).integers(1600, 640_000, size=40).tolist())
)


def test_mel_frames_equal_nemo_get_seq_len(oracle_random):
    featurizer = oracle_random.model.perception.preprocessor.featurizer
    info = oracle_random.info
    nemo = featurizer.get_seq_len(torch.tensor(LENGTHS)).tolist()
    ours = [C.num_mel_frames(n, info.mel) for n in LENGTHS]
    assert ours == nemo


def test_encoder_frames_equal_nemo_calc_length(oracle_random):
    from nemo.collections.asr.parts.submodules.subsampling import calc_length  # lazy: NeMo imports in seconds

    enc = oracle_random.model.perception.encoder
    info = oracle_random.info
    mel = torch.tensor([C.num_mel_frames(n, info.mel) for n in LENGTHS])
    nemo = (
        calc_length(
            mel.float(),
            all_paddings=2,
            kernel_size=3,
            stride=2,
            ceil_mode=False,
            repeat_num=int(np.log2(enc.subsampling_factor)),
        )
        .long()
        .tolist()
    )
    ours = [info.num_audio_frames(n) for n in LENGTHS]
    assert ours == nemo
    # 11.0 s -> 1100 -> 550 -> 275 -> 138 frames, as transcribe.cpp reported for the real model.
    assert C.num_audio_frames(176_000) == 138
    assert C.num_audio_frames(C.max_audio_samples()) == 500


@pytest.mark.parametrize("seconds", [0.1, 0.37, 1.0, 3.3, 40.0])
def test_audio_frames_equal_nemo_perception_output(oracle_random, seconds):
    n = int(seconds * 16000) + 7
    audio = torch.randn(1, n) * 0.1
    _, enc_len = oracle_random.model.perception(input_signal=audio, input_signal_length=torch.tensor([n]))
    assert int(enc_len[0]) == oracle_random.info.num_audio_frames(n)


def test_mel_params_read_from_checkpoint_match_nemo(oracle_random):
    f = oracle_random.model.perception.preprocessor.featurizer
    p = oracle_random.info.mel
    assert (p.n_fft, p.hop_length, p.win_length, p.n_mels) == (f.n_fft, f.hop_length, f.win_length, f.nfilt)
    assert p.sample_rate == f.sample_rate
    assert p.preemph == pytest.approx(f.preemph)
    assert p.log_zero_guard == f.log_zero_guard_value_fn(torch.zeros(1))
    # Canary-Qwen-2.5B's own values are the defaults.
    assert p == C.MelParams()


def test_unsupported_front_end_settings_are_refused():
    with pytest.raises(ValueError, match="normalize='all_features'"):
        C.MelParams.from_config({"normalize": "all_features"})
    with pytest.raises(ValueError, match="exact_pad"):
        C.MelParams.from_config({"exact_pad": True})
    with pytest.raises(ValueError, match="subsampling 'vggnet'"):
        C.Subsampling.from_config({"subsampling": "vggnet"})
    with pytest.raises(ValueError, match="power of two"):
        C.Subsampling.from_config({"subsampling_factor": 6})


def test_subsampling_factor_is_read_not_assumed():
    sub4 = C.Subsampling.from_config({"subsampling": "dw_striding", "subsampling_factor": 4})
    assert C.num_encoder_frames(1100, sub4) == 275
    assert C.num_encoder_frames(0) == 0


def test_dimensions_come_from_the_checkpoint(tiny_random_dir, tiny_trained_dir):
    a, b = inspect_checkpoint(tiny_random_dir), inspect_checkpoint(tiny_trained_dir)
    assert (a.encoder_dim, a.llm_hidden, a.lora_scale) == (64, 64, 3.0)
    assert (b.encoder_dim, b.llm_hidden, b.lora_scale) == (128, 128, 2.0)


def test_tensor_specs_are_consistent():
    specs = [v for v in vars(C).values() if isinstance(v, C.TensorSpec)]
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert all(
        s.dtype in {"TYPE_FP32", "TYPE_INT32", "TYPE_INT64", "TYPE_BOOL", "TYPE_STRING", "TYPE_UINT64"} for s in specs
    )
    # The CPU llm imitates the TensorRT-LLM backend: its tensor names are that backend's.
    for s in (
        C.INPUT_IDS,
        C.INPUT_LENGTHS,
        C.REQUEST_OUTPUT_LEN,
        C.PROMPT_EMBEDDING_TABLE,
        C.PROMPT_VOCAB_SIZE,
        C.OUTPUT_IDS,
        C.SEQUENCE_LENGTH,
    ):
        assert s.name == s.name.lower()


def test_finish_reasons_are_vllms_words_and_only_stop_and_length_are_answers():
    assert [r.value for r in C.FinishReason] == ["stop", "length", "cancelled", "aborted", "error"]
    assert {r for r in C.FinishReason if r.ok} == {C.FinishReason.STOP, C.FinishReason.LENGTH}
    # the value wherever it is written (metric labels, JSON, f-strings), and equal to it
    r = C.FinishReason.LENGTH
    assert str(r) == f"{r}" == "length" and r == "length" and C.FinishReason("length") is r
    assert C.FINISH_REASON.name == "finish_reason" and C.FINISH_REASON.dtype == "TYPE_STRING"


def test_all_models_names_every_model_constant_once():
    constants = {v for k, v in vars(C).items() if k.endswith("_MODEL") and isinstance(v, str)}
    assert len(C.ALL_MODELS) == len(set(C.ALL_MODELS)) and set(C.ALL_MODELS) == constants
    assert set(C.ENTRY_MODELS) | set(C.ASR_PIPELINE_MODELS) < set(C.ALL_MODELS)
    assert not set(C.ENTRY_MODELS) & set(C.ASR_PIPELINE_MODELS)

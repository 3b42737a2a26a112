"""Mel length buckets: the preprocessor pads each clip's features to a multiple of the bucket width
(true length in mel_length) so the encoder's dynamic batcher groups clips of similar length; the
padding changes no output. (Served: every server test runs with the default buckets; the batch
statistics are checked in tests/test_served.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from benchmarks.bucket_padding import main, overhead_percent
from canary_triton import contract as C
from canary_triton.export.repository import RepositoryOptions
from canary_triton.runtime.loaders import load_onnx, load_preprocessor

from .conftest import SR, speechlike

SECONDS = (0.5, 1.0, 1.99, 2.0, 2.01, 3.3, 7.3, 12.0, 19.99, 39.9, 40.0)


def test_bucket_arithmetic():
    mel = C.MelParams()
    assert C.mel_bucket_columns(C.DEFAULT_MEL_BUCKET_SECONDS, mel) == 200
    assert [C.bucketed_columns(c, 200, mel) for c in (1, 200, 201, 3999, 4000, 4001)] == [
        200,
        200,
        400,
        4000,
        4000,
        4001,
    ]
    assert C.bucketed_columns(37, 1, mel) == 37  # width 1: no padding
    for bad in (0.0, -1.0, 40.5):
        with pytest.raises(ValueError, match=r"mel bucket width must be in \(0, 40\] seconds"):
            C.mel_bucket_columns(bad, mel)


def test_repository_options_refuse_a_bad_bucket_width():
    with pytest.raises(ValueError, match=r"mel bucket width must be in \(0, 40\] seconds, got 0"):
        RepositoryOptions(mel_bucket_s=0.0)


@pytest.fixture(scope="module")
def pair(exported_random):
    bucketed, _ = load_preprocessor(exported_random, C.DEFAULT_MEL_BUCKET_SECONDS)
    plain, _ = load_preprocessor(exported_random, None)
    return bucketed, plain


def test_bucketed_features_are_the_unpadded_ones_plus_padding(pair):
    bucketed, plain = pair
    clips = [speechlike(s, seed=i) for i, s in enumerate(SECONDS)]
    for clip, b, p in zip(clips, bucketed(clips), plain(clips)):
        cols = C.mel_columns(len(clip))
        assert p.mel.shape[1] == cols
        assert b.mel.shape[1] == C.bucketed_columns(cols, 200) and (b.mel.shape[1] % 200 == 0 or b.mel.shape[1] == 4001)
        assert np.array_equal(b.mel[:, :cols], p.mel) and (b.mel[:, cols:] == 0.0).all()
        assert b.mel_length == p.mel_length and np.array_equal(b.input_ids, p.input_ids)


def test_bucket_padding_changes_no_encoder_output(pair, exported_random):
    """Each clip alone and unpadded vs. padded to its bucket and batched with others of that bucket:
    the valid encoder frames agree within 1e-5."""
    bucketed, plain = pair
    runner = load_onnx(exported_random, "encoder")
    clips = [speechlike(s, seed=100 + i) for i, s in enumerate(SECONDS)]
    ref = {}
    for i, p in enumerate(plain(clips)):
        enc, n = runner.encode(p.mel[None], np.array([p.mel_length], dtype=np.int64))
        ref[i] = enc[0, : int(n[0])]
    by_bucket: dict[int, list[int]] = {}
    outs = bucketed(clips)
    for i, b in enumerate(outs):
        by_bucket.setdefault(b.mel.shape[1], []).append(i)
    assert any(len(v) > 1 for v in by_bucket.values())  # some bucket holds clips of different lengths
    worst = 0.0
    for members in by_bucket.values():
        mel = np.stack([outs[i].mel for i in members])
        enc, n = runner.encode(mel, np.array([outs[i].mel_length for i in members], dtype=np.int64))
        for k, i in enumerate(members):
            got = enc[k, : int(n[k])]
            assert got.shape == ref[i].shape
            worst = max(worst, float(np.abs(got - ref[i]).max()))
    assert worst <= 1e-5, worst


def test_served_preprocessor_pads_to_buckets(server_random):
    c = grpcclient.InferenceServerClient(server_random.grpc_url)
    for seconds in (0.7, 2.3, 40.0):
        clip = speechlike(seconds, seed=7)
        inp = grpcclient.InferInput(C.AUDIO.name, [1, len(clip)], "FP32")
        inp.set_data_from_numpy(clip[None])
        r = c.infer(
            C.PREPROCESSOR_MODEL,
            [inp],
            outputs=[grpcclient.InferRequestedOutput(n) for n in (C.MEL.name, C.MEL_LENGTH.name)],
        )
        cols = C.mel_columns(len(clip))
        assert r.as_numpy(C.MEL.name).shape[2] == C.bucketed_columns(cols, 200)
        assert int(r.as_numpy(C.MEL_LENGTH.name).reshape(-1)[0]) == C.num_mel_frames(len(clip))
    assert SR == C.MelParams().sample_rate


def test_padding_overhead_benchmark_arithmetic():
    hop = C.MelParams().hop_length
    assert overhead_percent([(200 - 1) * hop], 2.0) == 0.0  # exactly one bucket: no padding
    assert overhead_percent([(100 - 1) * hop], 2.0) == pytest.approx(100.0)  # half a bucket: doubled
    assert overhead_percent([C.max_audio_samples()], 2.0) == 0.0  # the 40 s tensor is the cap


def test_padding_overhead_benchmark_runs(capsys):
    assert main(["--widths", "1,2", "--uniform-clips", "200"]) == 0
    out = capsys.readouterr().out
    assert "| held-out (45 clips" in out and "| uniform 1-40 s (200 clips, seed 0) |" in out
    assert main(["--widths", "0"]) == 2 and "--widths: mel bucket width must be in (0, 40]" in capsys.readouterr().err

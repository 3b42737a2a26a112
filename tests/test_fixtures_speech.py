"""canary_triton/fixtures/speech.py: the synthetic speech set's utterances (held-out voices and
digit strings never seen in training, the same for the same seed) and its NeMo manifests. The
tiny-trained checkpoint and its held-out clips were made with it; espeak-ng itself is not needed
here (the one test of synthesis checks the error when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.fixtures import speech as sp


@pytest.fixture(scope="module")
def split():
    return sp.make_utterances(300, 40, seed=0)


def test_the_split_has_its_sizes_and_is_the_same_for_the_same_seed(split):
    train, heldout = split
    assert (len(train), len(heldout)) == (300, 40)
    assert sp.make_utterances(300, 40, seed=0) == split
    assert sp.make_utterances(300, 40, seed=1) != split


def test_held_out_voices_and_digit_strings_never_occur_in_training(split):
    train, heldout = split
    assert {(u.voice, u.speed) for u in heldout} == set(sp.HELDOUT_PAIRS)
    # training speeds are jittered by up to 8 around the grid: no training clip has a held-out pair's grid speed
    for u in train:
        grid = min(sp.SPEEDS, key=lambda s: abs(s - u.speed))
        assert abs(u.speed - grid) <= 8 and (u.voice, grid) not in sp.HELDOUT_PAIRS
    held_digits = {u.text for u in heldout if u.text not in sp.COMMANDS}
    assert held_digits and not held_digits & {u.text for u in train}


def test_texts_are_digit_strings_or_commands_with_every_third_a_command(split):
    for utts in split:
        for i, u in enumerate(utts):
            words = u.text.split()
            if i % 3 == 2:
                assert u.text in sp.COMMANDS
            else:
                assert 2 <= len(words) <= 5 and set(words) <= set(sp.DIGITS)
            assert u.voice in sp.VOICES and 30 <= u.pitch <= 70


def test_all_texts_hold_every_word_the_set_can_say(split):
    vocabulary = {w for t in sp.all_texts() for w in t.split()}
    assert vocabulary >= {w for utts in split for u in utts for w in u.text.split()}
    assert vocabulary == set(sp.DIGITS) | {w for c in sp.COMMANDS for w in c.split()}


def test_the_manifest_lists_flac_files_beside_it(tmp_path, split):
    utts = split[1][:3]
    audios = [np.full(1600 * (i + 1), 0.25 * (i + 1), np.float32) for i in range(3)]
    manifest = sp.write_manifest(utts, audios, tmp_path / "set", "heldout")
    assert manifest == tmp_path / "set" / "manifest.jsonl"
    rows = read_manifest(manifest)
    assert [r["audio_filepath"] for r in rows] == [str(tmp_path / "set" / f"heldout_{i:03d}.flac") for i in range(3)]
    for r, u, a in zip(rows, utts, audios):
        assert (r["text"], r["voice"], r["speed"], r["pitch"]) == (u.text, u.voice, u.speed, u.pitch)
        assert r["duration"] == round(len(a) / sp.SAMPLE_RATE, 4)
        data, rate = sf.read(r["audio_filepath"], dtype="float32")
        assert rate == sp.SAMPLE_RATE and np.allclose(data, a, atol=1 / 32768)  # PCM_16


def test_without_espeak_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(sp.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"espeak-ng is needed .*apt-get install espeak-ng"):
        sp.require_espeak()
    with pytest.raises(RuntimeError, match="espeak-ng is needed"):
        sp.synthesize(sp.Utterance("one two", "en", 150, 50))

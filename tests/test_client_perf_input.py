"""canary_triton/client/perf_input.py: perf_analyzer's --input-data JSON from audio files, and its
check against a model's metadata and config (given here as Triton's JSON would give them; the
check against the served ensemble is in test_client.py)."""

from __future__ import annotations

import base64
import copy
import json

import numpy as np
import pytest
import soundfile as sf

from canary_triton import contract as C
from canary_triton.client import as_audio
from canary_triton.client.perf_input import (
    build_perf_input,
    decode_entry_tensor,
    perf_input_entry,
    validate_perf_input,
    write_perf_input,
)
from canary_triton.errors import InputError

from .conftest import speechlike

AUDIO, MNT, TEXT = C.AUDIO.name, C.MAX_NEW_TOKENS.name, C.TEXT_INPUT.name

#: The ensemble as ``get_model_metadata`` / ``get_model_config`` answer (max_batch_size > 0: the
#: metadata's dims include the batch dimension).
METADATA = {
    "inputs": [
        {"name": AUDIO, "datatype": "FP32", "shape": [-1, -1]},
        {"name": MNT, "datatype": "INT32", "shape": [-1, 1]},
    ]
}
CONFIG = {"max_batch_size": 16, "input": [{"name": AUDIO}, {"name": MNT, "optional": True}]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("perf-audio")
    a, b = folder / "a.wav", folder / "b.flac"
    sf.write(str(a), speechlike(0.7, 1), 16000, subtype="FLOAT")
    sf.write(str(b), np.stack([speechlike(1.1, 2)] * 2, axis=1)[::3], 16000 // 3, subtype="PCM_16")  # 5333 Hz stereo
    return [a, b]


def test_an_entry_carries_the_samples_as_little_endian_base64_with_their_shape():
    x = np.array([0.0, -1.0, 0.5, 1e-7], np.float32)
    entry = perf_input_entry(x)
    assert list(entry) == [AUDIO] and entry[AUDIO]["shape"] == [4]
    assert base64.b64decode(entry[AUDIO]["b64"]) == x.astype("<f4").tobytes()
    np.testing.assert_array_equal(decode_entry_tensor(entry[AUDIO], "FP32"), x)
    with_cap = perf_input_entry(x.astype(np.float64), max_new_tokens=64)  # any float array: sent as fp32
    assert with_cap[MNT] == {"content": [64], "shape": [1]}
    np.testing.assert_array_equal(decode_entry_tensor(with_cap[AUDIO], "FP32"), x)
    assert decode_entry_tensor(with_cap[MNT], "INT32").tolist() == [64]


def test_files_become_entries_of_what_the_client_would_send(files):
    data = build_perf_input(files, max_new_tokens=32)
    assert len(data["data"]) == 2
    for f, entry in zip(files, data["data"]):
        want = as_audio(f).samples  # decoded, downmixed, resampled to 16 kHz as the client does
        got = decode_entry_tensor(entry[AUDIO], "FP32")
        assert got.dtype == np.float32 and entry[AUDIO]["shape"] == [len(want)]
        np.testing.assert_array_equal(got, want)
        assert entry[MNT]["content"] == [32]
    assert all(MNT not in e for e in build_perf_input(files)["data"])
    assert validate_perf_input(data, METADATA, CONFIG) == []


def test_no_files_is_an_error():
    with pytest.raises(InputError, match=r"perf-input --mode asr needs at least one file \(audio files\)"):
        build_perf_input([])
    with pytest.raises(InputError, match="perf-input mode 'tts': expected one of asr, llm, ask"):
        build_perf_input(["x.wav"], mode="tts")


def test_llm_mode_asks_the_instruction_about_each_text_file_as_the_client_does(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("the meeting moved to friday\n")
    b.write_text("  call back tomorrow  ")
    data = build_perf_input([a, b], max_new_tokens=8, mode="llm", instruction="Who called?")
    texts = [e[TEXT]["content"] for e in data["data"]]
    assert texts == [
        [C.llm_mode_text("Who called?", "the meeting moved to friday")],
        [C.llm_mode_text("Who called?", "call back tomorrow")],
    ]
    assert all(e[TEXT]["shape"] == [1] and e[MNT]["content"] == [8] and AUDIO not in e for e in data["data"])
    default = build_perf_input([a], mode="llm")["data"][0][TEXT]["content"][0]
    assert default == C.llm_mode_text(C.SUMMARIZE_INSTRUCTION, "the meeting moved to friday")
    meta = {
        "inputs": [{"name": TEXT, "datatype": "BYTES", "shape": [1]}, {"name": MNT, "datatype": "INT32", "shape": [1]}]
    }
    assert validate_perf_input(data, meta, {"max_batch_size": 0, "input": [{"name": TEXT}]}) == []
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty.txt: the text file is empty"):
        build_perf_input([empty], mode="llm")


def test_ask_mode_sends_each_clip_with_the_instruction(files):
    data = build_perf_input(files, mode="ask", instruction="Summarize.")
    for f, entry in zip(files, data["data"]):
        np.testing.assert_array_equal(decode_entry_tensor(entry[AUDIO], "FP32"), as_audio(f).samples)
        assert entry[TEXT] == {"content": ["Summarize."], "shape": [1]} and MNT not in entry


def test_the_written_file_is_the_built_json(files, tmp_path):
    out = write_perf_input(files[:1], tmp_path / "new" / "input.json", max_new_tokens=8)
    assert out == tmp_path / "new" / "input.json"
    assert json.loads(out.read_text()) == build_perf_input(files[:1], max_new_tokens=8)


def _entry(**over):
    entry = perf_input_entry(np.zeros(5, np.float32), max_new_tokens=4)
    entry.update(over)
    return {"data": [entry]}


@pytest.mark.parametrize(
    "data,problem",
    [
        ({"data": []}, "'data' must be a non-empty list"),
        ({}, "'data' must be a non-empty list"),
        (_entry(speech={"content": [1.0], "shape": [1]}), "entry 0: the model has no input 'speech'"),
        (_entry(audio={"content": [[1.0]], "shape": [1, 1]}), "entry 0: 'audio' shape [1, 1] does not fit dims [-1]"),
        (_entry(max_new_tokens={"content": [4, 5], "shape": [2]}), "'max_new_tokens' shape [2] does not fit dims [1]"),
        (_entry(audio={"b64": "AAAA", "shape": [2]}), "entry 0: 'audio' content does not match shape [2] as FP32"),
        (_entry(audio={"content": [0.5, 0.5], "shape": [3]}), "'audio' content does not match shape [3] as FP32"),
        (_entry(audio={"shape": [3]}), "'audio' content does not match shape [3] as FP32"),
    ],
)
def test_problems_name_the_entry_the_input_and_what_is_wrong(data, problem):
    problems = validate_perf_input(data, METADATA, CONFIG)
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_missing_required_input_is_named_an_optional_one_is_not(files):
    data = build_perf_input(files)
    assert validate_perf_input(data, METADATA, CONFIG) == []  # max_new_tokens is optional
    required = copy.deepcopy(CONFIG)
    required["input"][1].pop("optional")
    assert validate_perf_input(data, METADATA, required) == [
        "entry 0: required input 'max_new_tokens' is missing",
        "entry 1: required input 'max_new_tokens' is missing",
    ]
    data["data"][1].pop(AUDIO)
    assert validate_perf_input(data, METADATA, CONFIG) == ["entry 1: required input 'audio' is missing"]


def test_without_batching_the_metadata_dims_are_the_entrys_own():
    meta = {"inputs": [{"name": AUDIO, "datatype": "FP32", "shape": [-1]}]}
    data = {"data": [perf_input_entry(np.ones(3, np.float32))]}
    assert validate_perf_input(data, meta, {"max_batch_size": 0}) == []
    fixed = {"inputs": [{"name": AUDIO, "datatype": "FP32", "shape": [4]}]}
    assert validate_perf_input(data, fixed, {}) == ["entry 0: 'audio' shape [3] does not fit dims [4]"]


def test_a_datatype_this_writer_does_not_produce_is_named():
    meta = {"inputs": [{"name": AUDIO, "datatype": "FP16", "shape": [-1, -1]}]}
    data = {"data": [perf_input_entry(np.ones(3, np.float32))]}
    assert validate_perf_input(data, meta, CONFIG) == [
        "entry 0: 'audio' has datatype FP16 this writer does not produce"
    ]


@pytest.mark.parametrize(
    "datatype,dtype", [("FP32", np.float32), ("INT32", np.int32), ("INT64", np.int64), ("UINT64", np.uint64)]
)
def test_decoding_either_form_gives_the_declared_dtype_and_shape(datatype, dtype):
    x = np.arange(6, dtype=dtype)
    b64 = {"b64": base64.b64encode(x.astype(np.dtype(dtype).newbyteorder("<")).tobytes()).decode(), "shape": [2, 3]}
    content = {"content": x.tolist(), "shape": [2, 3]}
    for value in (b64, content):
        got = decode_entry_tensor(value, datatype)
        assert got.shape == (2, 3) and got.dtype == np.dtype(dtype) and got.ravel().tolist() == x.tolist()

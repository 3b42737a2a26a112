"""canary_triton/evaluation/nemo_manifest.py: NeMo manifests (JSON lines) read and written; errors name the line."""

from __future__ import annotations

import json
import re

import pytest

from canary_triton.errors import InputError
from canary_triton.evaluation.nemo_manifest import AUDIO_KEY, DURATION_KEY, TEXT_KEY, read_manifest, write_manifest


def test_rows_keep_their_fields_and_relative_paths_resolve_against_the_manifest(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    lines = [
        json.dumps({AUDIO_KEY: "a.wav", DURATION_KEY: 1.5, TEXT_KEY: "one"}),
        "",  # blank lines are skipped
        "   ",
        json.dumps({AUDIO_KEY: "/abs/b.flac", DURATION_KEY: 2.0, "lang": "en"}),
        json.dumps({AUDIO_KEY: "sub/c.wav", TEXT_KEY: "Ünïcödé 数字"}, ensure_ascii=False),
    ]
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_manifest(folder / "m.jsonl")
    assert rows == [
        {AUDIO_KEY: str(folder / "a.wav"), DURATION_KEY: 1.5, TEXT_KEY: "one"},
        {AUDIO_KEY: "/abs/b.flac", DURATION_KEY: 2.0, "lang": "en"},
        {AUDIO_KEY: str(folder / "sub" / "c.wav"), TEXT_KEY: "Ünïcödé 数字"},
    ]


def test_a_missing_manifest_is_an_error_naming_it(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"manifest {tmp_path / 'none.jsonl'} does not exist")):
        read_manifest(tmp_path / "none.jsonl")
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(tmp_path)  # a folder is not a manifest


@pytest.mark.parametrize(
    "bad,message",
    [
        ('{"audio_filepath": "a.wav", ', r"line 3 is not JSON: "),
        ("not json at all", r"line 3 is not JSON: Expecting value"),
        ('{"duration": 1.0}', r"line 3 has no 'audio_filepath'"),
        ('["a.wav", 1.0]', r"line 3 has no 'audio_filepath'"),
        ('"a.wav"', r"line 3 has no 'audio_filepath'"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_and_the_line(tmp_path, bad, message):
    path = tmp_path / "m.jsonl"
    good = json.dumps({AUDIO_KEY: "a.wav"})
    path.write_text("\n".join([good, "", bad, good]) + "\n")  # line numbers count the blank line
    with pytest.raises(InputError, match="^" + re.escape(f"manifest {path} ") + message):
        read_manifest(path)


def test_written_rows_read_back_the_same(tmp_path):
    rows = [
        {AUDIO_KEY: str(tmp_path / "a.wav"), DURATION_KEY: 1.25, TEXT_KEY: "héllo 🙂", "pred_text": "hello"},
        {AUDIO_KEY: "/x/b.wav", "wer": 0.5},
    ]
    path = write_manifest(tmp_path / "out" / "deeper" / "m.jsonl", iter(rows))  # folders are created
    assert path == tmp_path / "out" / "deeper" / "m.jsonl"
    text = path.read_text(encoding="utf-8")
    assert "héllo 🙂" in text and len(text.splitlines()) == 2  # one row a line, not ASCII-escaped
    assert read_manifest(path) == rows


def test_writing_no_rows_gives_an_empty_manifest(tmp_path):
    path = write_manifest(tmp_path / "empty.jsonl", [])
    assert path.read_text() == "" and read_manifest(path) == []

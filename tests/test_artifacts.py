"""canary_triton/artifacts.py: export.json as one typed, versioned description, checked on read
with errors naming the field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from canary_triton import contract as C
from canary_triton.artifacts import EXPORT_MANIFEST, MANIFEST_VERSION, ExportManifest, as_json
from canary_triton.errors import CheckpointError

from .sample_export import sample_manifest, write_sample_export


def _edit(folder, change) -> str:
    """Apply ``change`` to the folder's export.json (as parsed JSON); returns the file's path."""
    path = folder / EXPORT_MANIFEST
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return str(path)


def test_write_then_read_gives_the_same_manifest(tmp_path):
    m = sample_manifest(mel=C.MelParams(n_mels=80, hop_length=100), parity_passed=True)
    m.write(tmp_path)
    assert ExportManifest.read(tmp_path) == m
    assert ExportManifest.from_json(json.loads(json.dumps(m.to_json()))) == m


def test_the_json_carries_the_version_and_leaves_out_what_is_not_there(tmp_path):
    data = json.loads(write_sample_export(tmp_path).joinpath(EXPORT_MANIFEST).read_text())
    assert data["schema_version"] == MANIFEST_VERSION
    assert "dry_run" not in data and "throughput_model" not in data and "parity_passed" not in data
    assert "encoder_plan" not in data["files"] and data["files"]["llm_base"] == "llm_base"
    assert data["model"]["mel"] == json.loads(json.dumps(as_json(C.MelParams())))


def test_a_missing_field_is_named_with_its_path(tmp_path):
    write_sample_export(tmp_path)
    path = _edit(tmp_path, lambda d: d["limits"].pop("max_table_rows"))
    with pytest.raises(CheckpointError) as e:
        ExportManifest.read(tmp_path)
    assert str(e.value) == f"{path}: limits.max_table_rows is missing; re-export with this version of canary-triton"


def test_a_missing_section_is_named(tmp_path):
    write_sample_export(tmp_path)
    _edit(tmp_path, lambda d: d.pop("files"))
    with pytest.raises(CheckpointError, match=r"export\.json: files is missing; re-export"):
        ExportManifest.read(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["model"].update(vocab_rows="100"), 'model.vocab_rows is "100", expected an integer'),
        (lambda d: d["model"].update(vocab_rows=True), "model.vocab_rows is true, expected an integer"),
        (lambda d: d["model"]["mel"].update(n_mels=1.5), "model.mel.n_mels is 1.5, expected an integer"),
        (lambda d: d["limits"].update(max_audio_seconds="40"), 'limits.max_audio_seconds is "40", expected a number'),
        (lambda d: d["options"].update(vad_gate="no"), 'options.vad_gate is "no", expected true or false'),
        (lambda d: d["options"].update(repository=[]), "options.repository is [], expected an object"),
        (lambda d: d.update(precision="bf16"), 'precision is "bf16", expected an object'),
        (lambda d: d["asr_prompt_ids"].__setitem__(2, "x"), 'asr_prompt_ids[2] is "x", expected an integer'),
        (lambda d: d.update(asr_prompt_ids=5), "asr_prompt_ids is 5, expected a list"),
    ],
)
def test_a_field_of_the_wrong_type_is_named_with_its_path(tmp_path, change, message):
    write_sample_export(tmp_path)
    path = _edit(tmp_path, change)
    with pytest.raises(CheckpointError) as e:
        ExportManifest.read(tmp_path)
    assert str(e.value) == f"{path}: {message}; re-export with this version of canary-triton"


def test_an_integer_where_a_number_is_expected_is_a_float(tmp_path):
    write_sample_export(tmp_path)
    _edit(tmp_path, lambda d: d["limits"].update(max_audio_seconds=40))
    seconds = ExportManifest.read(tmp_path).limits.max_audio_seconds
    assert seconds == 40.0 and isinstance(seconds, float)


def test_a_newer_schema_version_is_refused(tmp_path):
    write_sample_export(tmp_path)
    path = _edit(tmp_path, lambda d: d.update(schema_version=MANIFEST_VERSION + 1))
    with pytest.raises(CheckpointError) as e:
        ExportManifest.read(tmp_path)
    assert str(e.value).startswith(
        f"{path}: schema_version {MANIFEST_VERSION + 1} is newer than the version this canary-triton reads "
        f"({MANIFEST_VERSION}); re-export"
    )


def test_an_export_json_from_before_the_version_key_reads_as_version_1(tmp_path):
    write_sample_export(tmp_path)
    _edit(tmp_path, lambda d: d.pop("schema_version"))
    assert ExportManifest.read(tmp_path) == sample_manifest()


def test_a_missing_or_broken_file_is_refused_naming_it(tmp_path):
    with pytest.raises(CheckpointError) as e:
        ExportManifest.read(tmp_path)
    assert str(e.value) == (
        f"{tmp_path / EXPORT_MANIFEST} is missing: point the repository at a `canary-triton export` output"
    )
    (tmp_path / EXPORT_MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"export\.json: not valid JSON"):
        ExportManifest.read(tmp_path)
    (tmp_path / EXPORT_MANIFEST).write_text("[]")
    with pytest.raises(CheckpointError, match=r"export\.json: the file does not hold a JSON object"):
        ExportManifest.read(tmp_path)


def test_the_qwen3_folders_by_name():
    files = sample_manifest().files
    assert files.weights("llm_merged") == files.llm_merged and files.weights("llm_base") == files.llm_base
    with pytest.raises(CheckpointError, match="weights 'encoder_onnx': expected one of llm_merged, llm_base"):
        files.weights("encoder_onnx")


def test_gpu_files_are_set_as_they_are_built():
    m = sample_manifest().with_files(encoder_plan="engines/encoder.sm90.plan")
    assert m.files.encoder_plan == "engines/encoder.sm90.plan" and m.files.projector_plan is None
    assert replace(m, dry_run=True).to_json()["dry_run"] is True


def test_an_export_made_by_the_fixture_reads_back_to_the_same_json(exported_random):
    """Nothing the export writes is lost or renamed by reading it."""
    written = json.loads((exported_random / EXPORT_MANIFEST).read_text())
    m = ExportManifest.read(exported_random)
    assert m.to_json() == written
    assert written["schema_version"] == MANIFEST_VERSION and m.parity_passed is True
    assert m.profile == "cpu" and m.repository == str(exported_random / "model_repository")
    assert m.limits.max_table_rows == C.max_table_rows(m.model.mel, C.Subsampling(m.model.subsampling_factor))

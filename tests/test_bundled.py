"""canary_triton/bundled.py: the paths of the data shipped in the wheel point at that data."""

from __future__ import annotations

import json
from pathlib import Path

from canary_triton.bundled import ASSETS, DEMO_CHECKPOINT, DEMO_HELDOUT, DEMO_SAMPLE
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.serving.watchdog import PROBE_AUDIO


def test_the_demo_checkpoint_is_a_salm_checkpoint_folder():
    assert DEMO_CHECKPOINT.parent == ASSETS and (DEMO_CHECKPOINT / "model.safetensors").is_file()
    assert "perception" in json.loads((DEMO_CHECKPOINT / "config.json").read_text())


def test_the_held_out_manifest_names_existing_clips_and_the_sample_is_one_of_them():
    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
    assert rows and all(r["text"] for r in rows)
    assert all(Path(r["audio_filepath"]).is_file() for r in rows)  # read_manifest: relative to the manifest
    assert DEMO_SAMPLE.is_file() and DEMO_SAMPLE.parent == DEMO_HELDOUT
    assert PROBE_AUDIO == DEMO_SAMPLE  # the watchdog probes with the bundled sample

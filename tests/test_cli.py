"""The console command: subcommands, one-line errors, and the README's main job."""

from __future__ import annotations

import json
import subprocess
import sys

from canary_triton.cli import DEMO_HELDOUT
from canary_triton.fixtures.speech import read_manifest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "canary_triton.cli", *args], capture_output=True, text=True, timeout=600)


def test_help_lists_subcommands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("inspect", "make-fixture", "reference", "demo"):
        assert cmd in r.stdout


def test_inspect_reports_dimensions_from_the_checkpoint(tiny_random_dir):
    r = run("inspect", str(tiny_random_dir))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["encoder_dim"] == 64 and report["llm_hidden"] == 64
    assert report["lora"]["scale"] == 3.0
    assert report["max_audio_frames"] == 500
    assert report["asr_prompt_ids"].count(report["special_ids"]["audio_placeholder"]) == 1


def test_bad_checkpoint_path_is_a_one_line_error(tmp_path):
    r = run("inspect", str(tmp_path / "missing"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint folder")
    assert "Traceback" not in r.stderr


def test_demo_prints_the_transcript_of_the_bundled_sample():
    r = run("demo")
    assert r.returncode == 0, r.stderr[-2000:]
    expected = read_manifest(DEMO_HELDOUT / "manifest.jsonl")[0]["text"]
    assert r.stdout.strip().endswith(expected)

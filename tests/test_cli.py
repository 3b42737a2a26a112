"""The console command: subcommands, one-line errors, and the README's main job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from canary_triton.bundled import DEMO_HELDOUT
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.serving.tritonserver import free_port

from .conftest import SERVER_START_TIMEOUT_S, cli_in_process


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "canary_triton.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_help_lists_subcommands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("inspect", "export", "serve", "make-fixture", "reference", "demo"):
        assert cmd in r.stdout


def test_inspect_reports_dimensions_from_the_checkpoint(tiny_random_dir):
    r = cli_in_process("inspect", str(tiny_random_dir))  # the entry point itself: the tests around this one
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


@pytest.mark.served  # starts tritonserver in a subprocess
def test_demo_prints_the_transcript_of_the_bundled_sample(tmp_path):
    # export -> tritonserver -> gRPC client, as the README's main command runs it
    r = run("demo", "--work-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    expected = read_manifest(DEMO_HELDOUT / "manifest.jsonl")[0]["text"]
    assert r.stdout.strip().endswith(expected)
    assert (tmp_path / "export" / "model_repository" / "canary_qwen" / "config.pbtxt").is_file()


@pytest.mark.served  # starts tritonserver in a subprocess
def test_serve_starts_answers_and_stops_on_sigterm(exported_trained, oracle_trained, heldout, tmp_path):
    http, grpc, metrics = free_port(), free_port(), free_port()
    err = open(tmp_path / "stderr.log", "w")  # a file: an unread pipe could fill and block the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canary_triton.cli",
            "serve",
            str(exported_trained),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            "--log-file",
            str(tmp_path / "triton.log"),
            "--start-timeout",
            str(int(SERVER_START_TIMEOUT_S)),
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed once the server is ready
        assert line.startswith("ready: HTTP http://127.0.0.1:"), line + (tmp_path / "stderr.log").read_text()[-3000:]
        assert "canary_qwen" in proc.stdout.readline()
        audio = heldout[1][0]
        assert transcribe(audio, ClientOptions(url=f"127.0.0.1:{grpc}")) == oracle_trained.transcribe([audio])[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
            assert b"nv_inference_request_success" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)  # a bound against a hang, not a speed target
    assert code == 0

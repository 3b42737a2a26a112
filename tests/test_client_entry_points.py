"""The top-level client/ entry points, run as a user runs them against the real server:
client/tritonclient_example.py (tritonclient alone) and client/perf_analyzer.sh (every entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from canary_triton import contract as C
from canary_triton.client import CanaryClient

from .conftest import DEMO_HELDOUT

ROOT = Path(__file__).resolve().parents[1]
CLIP = DEMO_HELDOUT / "heldout_000.flac"
BOUND_S = 600  # a bound against a hang, not a speed target


def _example(server, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(ROOT / "client" / "tritonclient_example.py"), str(CLIP), "--url", server.grpc_url, *args],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def test_the_tritonclient_example_transcribes_as_the_client_does_unary_and_streamed(server_trained):
    with CanaryClient(server_trained.grpc_url) as c:
        want = c.transcribe(str(CLIP))
    assert want and _example(server_trained) == want
    assert _example(server_trained, "--stream") == want  # the pieces concatenate to the transcript


def test_the_tritonclient_example_refuses_audio_that_is_not_16_khz(server_trained, tmp_path):
    clip = tmp_path / "8k.wav"
    soundfile.write(clip, np.zeros(8000, np.float32), 8000)
    r = subprocess.run(
        [sys.executable, str(ROOT / "client" / "tritonclient_example.py"), str(clip), "--url", server_trained.grpc_url],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert r.returncode != 0 and "8000 Hz" in r.stderr


def test_the_perf_analyzer_script_measures_every_entry_point(server_trained):
    host, grpc_port = server_trained.grpc_url.rsplit(":", 1)
    env = {
        **os.environ,
        "HOST": host,
        "GRPC_PORT": grpc_port,
        "HTTP_PORT": server_trained.http_url.rsplit(":", 1)[1],
        "CONCURRENCY": "2",
        "REQUESTS": "8",
        "PERF_ANALYZER": str(Path(sys.executable).parent / "perf_analyzer"),
        "CANARY_TRITON": str(Path(sys.executable).parent / "canary-triton"),
    }
    r = subprocess.run(
        ["bash", str(ROOT / "client" / "perf_analyzer.sh")], capture_output=True, text=True, env=env, timeout=BOUND_S
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| canary_qwen")]
    models = [(row.split("|")[1].strip(), row.split("|")[2].strip()) for row in rows]
    assert models == [
        (C.ENSEMBLE_MODEL, "grpc"),
        (C.ENSEMBLE_MODEL, "http"),
        (C.STREAM_MODEL, "grpc"),
        (C.LONG_FORM_MODEL, "grpc"),
        (C.LONG_FORM_STREAM_MODEL, "grpc"),
        (C.LLM_MODE_MODEL, "grpc"),
        (C.ASK_MODEL, "grpc"),
    ]
    for row in rows:  # concurrency, then a positive throughput and three latencies
        cells = [c.strip() for c in row.split("|")[3:8]]
        assert cells[0] == "2" and float(cells[1]) > 0 and all(int(c) >= 0 for c in cells[2:]), row

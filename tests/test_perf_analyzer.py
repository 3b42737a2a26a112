"""perf_analyzer 2.51 (the client ASR fleets measure Triton with) against every entry point of the
served repository, with the inputs `canary-triton perf-input` writes.

What it does that the project's own clients do not: one gRPC stream per concurrency slot with
requests in flight back to back, and streams closed with requests still in flight at the end of
each run. Before the decoupled-BLS iterators were held through a round trip (triton_adapter.
forward_tokens), `--streaming` at concurrency 8-16 on canary_qwen_stream killed its stub within
the first window (a segfault in the 2.51 stub) and left the llm blocked in a send.

Pass means: perf_analyzer exits 0 (no failed request), Triton counts no failure at the model, no
stub died (same stub processes, no supervisor restart), and a plain transcription afterwards
equals the one before. Windows are counted in requests, not seconds: nothing depends on speed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from canary_triton import contract as C
from canary_triton.client import CanaryClient, ClientOptions
from canary_triton.client.perf_input import MODES, validate_perf_input, write_perf_input
from canary_triton.evaluation.nemo_manifest import read_manifest

from .conftest import DEMO_HELDOUT

PERF_ANALYZER = Path(sys.executable).parent / "perf_analyzer"  # scripts/install_perf_analyzer.sh
CONCURRENCY = "16:32:16"  # 16, then 32 requests in flight
WINDOW_REQUESTS = 48  # requests per measurement window (count_windows: no wall-clock window)
RUN_LIMIT_S = 600  # a bound against a hang (a wedged server), not a speed target

#: (model, protocol, perf-input mode, streaming)
RUNS = [
    (C.ENSEMBLE_MODEL, "grpc", "asr", False),
    (C.ENSEMBLE_MODEL, "http", "asr", False),
    (C.STREAM_MODEL, "grpc", "asr", True),
    (C.LONG_FORM_STREAM_MODEL, "grpc", "asr", True),
    (C.LONG_FORM_MODEL, "grpc", "asr", False),
    (C.LLM_MODE_MODEL, "grpc", "llm", False),
    (C.ASK_MODEL, "grpc", "ask", False),
]


def test_every_entry_point_has_a_run_and_every_mode_an_entry_point():
    assert {model for model, *_ in RUNS} == {m for _, models in MODES.values() for m in models}
    for model, _, mode, _ in RUNS:
        assert model in MODES[mode][1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("perf-input")
    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")[:12]
    audio = [r["audio_filepath"] for r in rows]
    texts = []
    for i, r in enumerate(rows):
        texts.append(tmp / f"transcript_{i}.txt")
        texts[-1].write_text(r["text"] + "\n")
    return {
        "asr": write_perf_input(audio, tmp / "asr.json", max_new_tokens=16),
        "llm": write_perf_input(texts, tmp / "llm.json", max_new_tokens=8, mode="llm"),
        "ask": write_perf_input(audio, tmp / "ask.json", max_new_tokens=8, mode="ask"),
    }


def _get(server, path: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=60) as r:
        return json.loads(r.read())


def _failures(server, model: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.opts.metrics_port}/metrics", timeout=60) as r:
        text = r.read().decode()
    m = re.search(rf'^nv_inference_request_failure{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def run_perf_analyzer(
    server, model: str, protocol: str, data: Path, streaming: bool, concurrency: str = CONCURRENCY
) -> subprocess.CompletedProcess:
    assert PERF_ANALYZER.is_file(), f"{PERF_ANALYZER} is missing: run scripts/bootstrap.sh (it installs perf_analyzer)"
    url = server.grpc_url if protocol == "grpc" else server.http_url
    cmd = [
        str(PERF_ANALYZER),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "-b",
        "1",
        "--input-data",
        str(data),
        "--concurrency-range",
        concurrency,
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(WINDOW_REQUESTS),
        "--stability-percentage",
        "1000",  # any spread is stable: 3 windows per concurrency, measured on a shared machine
        *(["--streaming"] if streaming else []),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_LIMIT_S)


@pytest.mark.parametrize("model,protocol,mode,streaming", RUNS, ids=[f"{m}-{p}" for m, p, *_ in RUNS])
def test_perf_analyzer_runs_clean_on_every_entry_point(
    server_trained, inputs, heldout, model, protocol, mode, streaming
):
    server = server_trained
    data = json.loads(inputs[mode].read_text())
    problems = validate_perf_input(
        data, _get(server, f"/v2/models/{model}"), _get(server, f"/v2/models/{model}/config")
    )
    assert problems == []
    options = ClientOptions(url=server.grpc_url, protocol="grpc")
    with CanaryClient(options=options) as client:
        before = client.transcribe(heldout[0][0])
    stubs, failures = server.stub_pids(), _failures(server, model)
    restarts = list(server.supervisor.restarts)

    result = run_perf_analyzer(server, model, protocol, inputs[mode], streaming)

    report = f"perf_analyzer exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    assert "Concurrency: 32" in result.stdout, report  # both levels measured
    assert _failures(server, model) == failures, report
    assert server.stub_pids() == stubs and server.supervisor.restarts == restarts, "a stub died\n" + report
    with CanaryClient(options=options) as client:
        assert client.transcribe(heldout[0][0]) == before


def test_streaming_at_16_repeatedly_leaves_every_stub_alive(server_trained, inputs, heldout):
    """The issue's check: perf_analyzer --streaming at concurrency 16 on canary_qwen_stream, run
    after run (it crashed the stub on every try at 8 or more before the fix)."""
    server = server_trained
    stubs = server.stub_pids()
    for _ in range(3):
        result = run_perf_analyzer(server, C.STREAM_MODEL, "grpc", inputs["asr"], streaming=True, concurrency="16")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert server.stub_pids() == stubs

"""Smoke tests of the benchmarks (benchmarks/): each runs on a tiny setting against the session's
served tiny-trained model and checks the output structure and the exit code. No timing threshold:
the figures are measurements, not assertions."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gateway_overhead, long_form, lora_runtime, nemo_vs_served, throughput, wer_eval
from benchmarks import perf_analyzer_recipe as pa
from benchmarks._common import Clip, Series, load_clips, model_ready, plot_latency_throughput
from benchmarks._nemo import SIZES, checkpoint_parameters, generate_ids, load_oracle, make_random_checkpoint
from benchmarks.soak import passed, report, run_soak, soak_server
from benchmarks.throughput import build_mixes
from canary_triton import contract as C
from canary_triton.bundled import DEMO_HELDOUT

from .conftest import SERVER_START_TIMEOUT_S, speechlike

MANIFEST = DEMO_HELDOUT / "manifest.jsonl"


def _json(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


# -- 1. throughput / latency sweep --------------------------------------------------------------
def test_throughput_sweep_smoke(server_trained, exported_trained, oracle_trained, tmp_path):
    out = tmp_path / "tp"
    rc = throughput.main(
        [
            "--url",
            server_trained.grpc_url,
            "--export-dir",
            str(exported_trained),
            "--limit",
            "3",
            "--mixes",
            "short,medium",
            "--concurrency",
            "1,2",
            "--out",
            str(out),
        ],
        oracle=oracle_trained,
    )
    assert rc == 0
    p = _json(out / "throughput.json")
    assert p["machine"]["cpu_count"] and p["machine"]["platform"]
    assert p["result"]["reference"].startswith("NeMo")
    assert p["result"]["warmup"]["requests"] == 3 + 1  # 3 clips + 1 joined medium recording, excluded
    rows = p["result"]["rows"]
    assert {(r["mode"], r["mix"], r["concurrency"]) for r in rows} == {
        (m, x, c) for m in ("unary", "stream") for x in ("short", "medium") for c in (1, 2)
    }
    for r in rows:
        assert r["errors"] == [] and r["wrong_transcripts"] == []
        assert r["rtfx"] > 0 and r["requests_per_s"] > 0 and r["tokens_per_s"] > 0
        assert r["latency_p50_ms"] <= r["latency_p90_ms"] <= r["latency_p99_ms"]
        if r["mode"] == "stream":
            assert 0 < r["first_partial_p50_ms"] <= r["latency_p99_ms"]
    models = {s["model"] for s in p["result"]["server_statistics"]}
    assert {C.ENSEMBLE_MODEL, C.ENCODER_MODEL, C.LLM_MODEL} <= models
    assert "| mode | mix | concurrency |" in (out / "throughput.md").read_text()
    assert (out / "latency_vs_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- 2. NeMo in-process vs served ----------------------------------------------------------------
def test_nemo_vs_served_smoke(server_trained, exported_trained, oracle_trained, tmp_path):
    out = tmp_path / "nvs"
    rc = nemo_vs_served.main(
        [
            "--url",
            server_trained.grpc_url,
            "--export-dir",
            str(exported_trained),
            "--metrics-url",
            f"http://127.0.0.1:{server_trained.opts.metrics_port}/metrics",
            "--limit",
            "6",
            "--batch-sizes",
            "3,6",
            "--concurrency",
            "1,2",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--nemo-dtype",
            "float32",
            "--profile",
            "--out",
            str(out),
        ],
        oracle=oracle_trained,
    )
    assert rc == 0
    p = _json(out / "nemo_vs_served.json")
    assert p["identical"] is True and p["ratio"] > 0
    assert [r["batch_size"] for r in p["nemo"]["rows"]] == [3, 6]
    assert [r["concurrency"] for r in p["served"]["rows"]] == [1, 2]
    assert p["served"]["best_rtfx"] == max(r["rtfx"] for r in p["served"]["rows"])
    assert all(r["errors"] == [] and r["wrong"] == [] for r in p["served"]["rows"])
    assert p["nemo"]["texts"] == p["served"]["rows"][0]["texts"]
    assert p["nemo"]["profile"]["top_own_time"]
    assert p["checkpoint"]["parameters"]["total"] > 0
    assert "Served / NeMo throughput" in (out / "nemo_vs_served.md").read_text()
    assert p["machine"]["instruction_set"] and p["served_precision"] == "fp32"  # the fixture's export
    assert p["memory"]["nemo_process_peak_rss_mib"] > 0 and p["memory"]["server"] is None  # --url: not ours
    # Latency: one 5 s clip at NeMo batch 1 and served concurrency 1, same transcript (fp32).
    lat_n, lat_s = p["nemo"]["latency"], p["served"]["latency"]
    assert lat_n["clip_s"] == lat_s["clip_s"] == 5.0 and lat_n["best_s"] > 0 and lat_s["best_s"] > 0
    assert lat_s["texts"] == [lat_n["by_dtype"]["float32"]["text"]] and lat_s["errors"] == []
    assert "Latency, one 5.0 s clip" in (out / "nemo_vs_served.md").read_text()
    assert p["served"]["llm_mode"]["errors"] == [] and p["memory"]["llm_mode_requests"] == 2
    # The ASR engine's in-flight batch over the best pass, from the server's own counters.
    (steps,) = [r for r in p["served"]["rows"] if r["concurrency"] == p["served"]["best_concurrency"]][0]["llm_steps"]
    assert steps["model"] == C.LLM_MODEL and steps["decode_steps"] > 0 and steps["prefill_positions"] > 0
    assert 1 <= steps["decode_mean_rows"] <= 2 and 1 <= steps["prefill_mean_rows"] <= 2  # concurrency 1 or 2
    assert "mean rows per step" in (out / "nemo_vs_served.md").read_text()
    # fp32 served equals NeMo fp32: every leading token agrees
    lead = p["served"]["rows"][0]["leading_tokens"]
    assert lead["agree"] == lead["of"] > 0 and lead["clips_all_equal"] == lead["clips"] == 6
    assert (
        lead["median_fraction"] == 1.0 and "Leading tokens equal to NeMo's" in (out / "nemo_vs_served.md").read_text()
    )


def test_nemo_vs_served_url_needs_export_dir(capsys):
    assert nemo_vs_served.main(["--url", "127.0.0.1:1"]) == 2
    assert "--export-dir" in capsys.readouterr().err


def test_random_checkpoint_generates_a_fixed_length(tmp_path):
    """Random-weight sizes: EOS never wins, so every clip generates exactly max_new_tokens."""
    ckpt = make_random_checkpoint("tiny", tmp_path / "ckpt", seed=3)
    counts = checkpoint_parameters(ckpt)
    assert counts["encoder"] > 0 and counts["llm"] > 0
    full = SIZES["full"]
    assert (full.enc_layers, full.enc_d_model, full.llm_hidden, full.llm_layers, full.llm_vocab) == (
        32,
        1024,
        2048,
        28,
        151936,
    )
    oracle = load_oracle(ckpt)
    clips = [Clip(f"c{i}", speechlike(s, i)) for i, s in enumerate((0.6, 2.3))]
    ids = generate_ids(oracle, clips, batch_size=2, max_new_tokens=9)
    assert [len(row) for row in ids] == [9, 9]
    assert len({tuple(r) for r in ids}) == 2  # the output follows the audio


# -- 3. long form vs short form ------------------------------------------------------------------
def test_long_form_smoke(server_trained, tmp_path, capsys):
    out = tmp_path / "lf"
    argv = ["--url", server_trained.grpc_url, "--limit", "4", "--concurrency", "2", "--repeats", "1", "--warmup", "1"]
    # The WER gate is the checkpoint's business (tiny-trained was not trained on joined utterances):
    # the smoke run lets any WER through, the gate is exercised below.
    rc = long_form.main(
        argv + ["--max-wer-increase", "1.0", "--out", str(out), "--write-audio", str(tmp_path / "long.wav")]
    )
    p = _json(out / "long_form.json")
    assert p["short"]["requests"] == 4 and p["short"]["errors"] == [] and p["short"]["rtfx"] > 0
    assert 0 <= p["short"]["wer"] <= 1
    gaps = p["audio"]["gaps_s"]
    assert len(gaps) == 3 and all(0.3 <= g <= 1.5 for g in gaps)
    assert p["audio"]["long_s"] == pytest.approx(p["audio"]["speech_s"] + sum(gaps), abs=1e-3)
    assert (tmp_path / "long.wav").stat().st_size > 0
    if model_ready(server_trained.grpc_url, C.LONG_FORM_MODEL):
        assert rc == 0, p.get("failures")
        assert p["long"]["rtfx"] > 0 and p["ratio_long_over_short"] > 0 and p["long"]["text"]
        assert 0 <= p["long"]["wer"] and 0 <= p["long"]["wer_vs_short"]
        if "long_stream" in p:
            assert p["long_stream"]["matches_unary"] and p["long_stream"]["first_piece_s"] > 0
        assert long_form.main(argv + ["--max-wer-increase", "-1"]) == 1  # a gate no transcript passes
    else:  # the part that cannot run says so and fails on its own
        assert rc == 3
        assert p["long"] is None and C.LONG_FORM_MODEL in p["long_missing"]
        assert C.LONG_FORM_MODEL in capsys.readouterr().err


# -- 4. WER harness ------------------------------------------------------------------------------
def test_wer_eval_manifest(server_trained, tmp_path):
    out = tmp_path / "wer"
    rc = wer_eval.main(
        [
            "--manifest",
            str(MANIFEST),
            "--max-samples",
            "6",
            "--url",
            server_trained.grpc_url,
            "--concurrency",
            "2",
            "--chunk",
            "4",
            "--max-wer",
            "0.5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    p = _json(out / "wer_eval.json")
    (s,) = p["sets"]
    assert s["items"] == 6 and s["scored"] == 6 and s["errors"] == [] and 0 <= s["wer"] <= 0.5
    assert p["summary"]["mean_wer"] == s["wer"] and p["summary"]["composite_rtfx"] > 0
    preds = [json.loads(x) for x in Path(s["predictions"]).read_text().splitlines()]
    assert len(preds) == 6 and all("pred_text" in r and "wer" in r for r in preds)


def test_wer_eval_fails_on_wrong_transcripts(server_trained, tmp_path):
    rows = [json.loads(x) for x in MANIFEST.read_text().splitlines()[:2]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(
            json.dumps(
                {
                    **r,
                    "audio_filepath": str(DEMO_HELDOUT / r["audio_filepath"]),
                    "text": "the quick brown fox jumps over",
                }
            )
            + "\n"
            for r in rows
        )
    )
    assert wer_eval.main(["--manifest", str(bad), "--url", server_trained.grpc_url, "--max-wer", "0.5"]) == 1


@pytest.mark.parametrize("streaming", [True, False])
def test_wer_eval_hf_dataset_local(server_trained, tmp_path, streaming):
    """The Hugging Face path on a local parquet folder laid out as the hub's audio sets (no download)."""
    import pyarrow as pa  # lazy, as the others below: heavy optional packages (seconds) few tests use
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in MANIFEST.read_text().splitlines()[:3]]
    table = pa.Table.from_pylist(
        [
            {
                "audio": {"bytes": (DEMO_HELDOUT / r["audio_filepath"]).read_bytes(), "path": r["audio_filepath"]},
                "text": r["text"],
                "id": f"x/{i}",
            }
            for i, r in enumerate(rows)
        ]
        + [
            {
                "audio": {"bytes": (DEMO_HELDOUT / rows[0]["audio_filepath"]).read_bytes(), "path": "skip.flac"},
                "text": "ignore time segment in scoring",
                "id": "x/skip",
            }
        ]
    )
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "ds" / "data" / "test-00000-of-00001.parquet")
    out = tmp_path / "out"
    argv = [
        "--hf-dataset",
        str(tmp_path / "ds"),
        "--hf-sets",
        ":test",
        "--url",
        server_trained.grpc_url,
        "--out",
        str(out),
        "--save-audio",
        str(tmp_path / "audio"),
    ] + ([] if streaming else ["--no-streaming"])
    assert wer_eval.main(argv) == 0
    (s,) = _json(out / "wer_eval.json")["sets"]
    assert s["items"] == 3 and s["skipped_empty_references"] == 1 and s["errors"] == [] and s["wer"] is not None
    (saved,) = (tmp_path / "audio").glob("*/manifest.jsonl")  # the same clips, reusable as a NeMo manifest

    clips = load_clips(saved)
    assert [c.text for c in clips] == [r["text"] for r in rows]
    assert clips[0].samples.size == pytest.approx(16000 * rows[0]["duration"], abs=16)


# -- 4b. gateway overhead -----------------------------------------------------------------------
def test_gateway_overhead_smoke(server_trained, tmp_path):
    out = tmp_path / "gw"
    rc = gateway_overhead.main(
        ["--url", server_trained.grpc_url, "--limit", "3", "--concurrency", "1,2", "--passes", "1", "--out", str(out)]
    )
    assert rc == 0
    p = _json(out / "gateway_overhead.json")
    rows = p["result"]["rows"]
    assert {(r["path"], r["concurrency"]) for r in rows} == {(x, c) for x in ("direct", "gateway") for c in (1, 2)}
    for r in rows:
        assert r["requests"] == 3 and r["wrong_transcripts"] == [] and r["rtfx"] > 0
        assert r["latency_p50_ms"] <= r["latency_p90_ms"]
    assert [o["concurrency"] for o in p["result"]["overhead"]] == [1, 2] and p["result"]["failures"] == []
    assert "canary-triton gateway started here" in p["server"]["gateway"]
    assert "| path | concurrency |" in (out / "gateway_overhead.md").read_text()


# -- 5. perf_analyzer recipe ---------------------------------------------------------------------
def _script(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_perf_analyzer_missing_or_unrunnable(tmp_path, capsys):
    assert pa.main(["--perf-analyzer", str(tmp_path / "absent"), "--limit", "1", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "glibc" in err and "2.38" in err
    broken = _script(
        tmp_path / "perf_analyzer",
        """
        echo "perf_analyzer: /lib/x86_64-linux-gnu/libc.so.6: version \\`GLIBC_2.38' not found" >&2
        exit 1
    """,
    )
    assert pa.main(["--perf-analyzer", str(broken), "--limit", "1", "--out", str(tmp_path / "o")]) == 3
    assert "GLIBC_2.38" in capsys.readouterr().err


def test_perf_analyzer_recipe_with_a_stand_in_binary(server_trained, tmp_path):
    """Everything but perf_analyzer itself: input data checked against the served models, the
    command lines, and the CSV it writes parsed into the table."""
    calls = tmp_path / "calls.txt"
    csv_out = tmp_path / "perf.csv"  # what perf_analyzer -f writes: latencies in microseconds, rows by throughput
    csv_out.write_text(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency\n"
        "2,30.5,10,200,1500,100,20000,50,5,60000,70000,75000,80000\n"
        "1,20.0,10,200,100,100,15000,50,5,40000,45000,47000,50000\n"
    )
    stand_in = _script(
        tmp_path / "perf_analyzer",
        f"""
        [ "$1" = "--help" ] && exit 0
        echo "$@" >> {calls}
        while [ $# -gt 0 ]; do [ "$1" = "-f" ] && out="$2"; shift; done
        cp {csv_out} "$out"
    """,
    )
    out = tmp_path / "pa"
    rc = pa.main(
        [
            "--url",
            server_trained.grpc_url,
            "--limit",
            "2",
            "--streaming",
            "--concurrency-range",
            "1:2:1",
            "--max-new-tokens",
            "16",
            "--perf-analyzer",
            str(stand_in),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    lines = calls.read_text().splitlines()
    assert len(lines) == 2
    assert f"-m {C.ENSEMBLE_MODEL} -b 1 --input-data {out / 'input.json'} -i grpc" in lines[0]
    assert "--streaming" not in lines[0]
    assert f"-m {C.STREAM_MODEL} " in lines[1] and lines[1].endswith("--streaming")
    data = _json(out / "input.json")["data"]
    assert len(data) == 2 and data[0][C.MAX_NEW_TOKENS.name]["content"] == [16]
    p = _json(out / "perf_analyzer.json")
    rows = p["runs"][0]["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert rows[0]["p50_ms"] == 40.0 and rows[1]["server_queue_ms"] == 1.5
    assert rows[1]["rtfx_estimate"] == pytest.approx(30.5 * p["input"]["mean_seconds"])


def test_perf_analyzer_failure_is_an_error(server_trained, tmp_path):
    failing = _script(
        tmp_path / "perf_analyzer",
        """
        [ "$1" = "--help" ] && exit 0
        echo "Failed to obtain stable measurement" >&2
        exit 1
    """,
    )
    assert (
        pa.main(
            [
                "--url",
                server_trained.grpc_url,
                "--limit",
                "1",
                "--perf-analyzer",
                str(failing),
                "--out",
                str(tmp_path / "pa"),
            ]
        )
        == 1
    )


def test_plot_without_matplotlib_still_writes_a_png(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a machine without it
    lib = plot_latency_throughput(
        [Series("unary short", (10.0, 20.0), (50.0, 80.0), ("c=1", "c=2"))], tmp_path / "p.png", "t", "RTFx"
    )
    assert lib == "pillow"
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert os.path.getsize(tmp_path / "p.png") > 1000


def test_mixes_join_clips_under_the_limit():
    clips = [Clip(f"c{i}", np.zeros(int(16000 * s), np.float32), f"t{i}") for i, s in enumerate([3.0] * 20)]
    mixes = build_mixes(clips, ["short", "medium", "long", "mixed"])
    assert len(mixes["short"]) == 20
    for name in ("medium", "long"):
        assert sum(len(c.text.split()) for c in mixes[name]) == 20  # every clip used once
        assert all(c.seconds <= C.MAX_AUDIO_SECONDS for c in mixes[name])
    assert 8 <= mixes["medium"][0].seconds < 12 and 25 <= mixes["long"][0].seconds < 30
    assert len(mixes["mixed"]) == sum(len(mixes[n]) for n in ("short", "medium", "long"))


def test_lora_runtime_benchmark_runs(exported_random, capsys):
    assert (
        lora_runtime.main([str(exported_random), "--rows", "1,2", "--context", "8", "--steps", "2", "--warmup", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "LoRA r=" in out and "q_proj/v_proj" in out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and all(line.rstrip().endswith("x |") for line in rows)


@pytest.mark.served
def test_a_short_soak_loses_nothing(exported_trained, tmp_path):
    """benchmarks/soak.py for 2 minutes: perf_analyzer streams, the project's client, dropped
    streams, missed deadlines and a stub killed every 40 s, the decoupled llm's first (its BLS
    callers end their requests UNAVAILABLE); nothing lost, every answer right, the server serving
    at the end. The decoupled entry models are spared: Triton 2.51 never ends the streams of a
    killed entry stub, and perf_analyzer has no deadline (docs/reliability.md, measured)."""

    server = soak_server(exported_trained, tmp_path).start(SERVER_START_TIMEOUT_S)
    try:
        result = run_soak(
            server, seconds=120, kill_every_s=40, work=tmp_path, spare=(C.STREAM_MODEL, C.LONG_FORM_STREAM_MODEL)
        )
    finally:
        server.stop()
    print("\n" + report(result))
    counts = result["counts"]
    assert passed(result), report(result)
    assert counts.get("answered", 0) > 0 and counts.get("perf_analyzer runs", 0) > 0
    assert counts.get("dropped by the client", 0) > 0
    assert sum(v for k, v in counts.items() if k.startswith("stub killed")) >= 2
    # each kill is answered by a reload, or by a restart when tritonserver itself aborted (Triton
    # 2.51's lock_exception: docs/reliability.md)
    assert len(result["stub_reloads"]) + len(result["tritonserver_deaths"]) >= 1


def test_autocast_lengths_says_what_it_needs_without_modelopt(tmp_path, capsys):
    """The CPU test environment has no ModelOpt (the GPU image has 0.37): exit 3, naming the package."""
    from benchmarks import autocast_lengths

    assert autocast_lengths.main(["--onnx", str(tmp_path / "encoder.onnx")]) == 3
    assert "nvidia-modelopt[onnx]==0.37" in capsys.readouterr().err

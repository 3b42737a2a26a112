"""The one-command first GPU run's logic with stand-in stages (its real stages need the image)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from canary_triton.checkpoint.reader import inspect_checkpoint
from canary_triton.gpu import first_run as fr
from canary_triton.gpu import throughput as gt

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 1.5
        return self.t


def test_stages_run_in_order_and_a_failure_skips_what_needs_it():
    seen = []

    def ok(name):
        def run(state):
            seen.append(name)
            state[name] = True
            return f"{name} fine"

        return run

    def boom(state):
        raise RuntimeError("TensorRT failed to build an engine\nlong log that must not reach the table")

    stages = [
        fr.Stage("versions", ok("versions")),
        fr.Stage("export", boom, ("versions",)),
        fr.Stage("serve", ok("serve"), ("export",)),
        fr.Stage("unrelated", ok("unrelated"), ("versions",)),
    ]
    state = {}
    results = fr.run_stages(stages, state, clock=Clock())
    assert [(r.name, r.status) for r in results] == [
        ("versions", "pass"),
        ("export", "FAIL"),
        ("serve", "skipped"),
        ("unrelated", "pass"),
    ]
    assert results[1].detail == "RuntimeError: TensorRT failed to build an engine"  # first line only
    assert results[2].detail == "needs export" and results[0].seconds == pytest.approx(1.5)
    assert seen == ["versions", "unrelated"] and state == {"versions": True, "unrelated": True}


def test_transcript_comparison():
    cmp = fr.compare_transcripts(["a", "b", "c"] * 4, ["a", "b", "c"] * 3 + ["a", "x", "c"])
    assert (cmp.total, cmp.equal, cmp.mismatches) == (12, 11, ((10, "b", "x"),))
    assert cmp.ok() and "11/12 identical" in fr.transcript_stage_detail(cmp)
    bad = fr.compare_transcripts(["a", "b"], ["x", "b"])
    with pytest.raises(AssertionError, match=r"1/2 identical .*clip 0: gpu 'a' vs cpu 'x'.*need >= 90%"):
        fr.transcript_stage_detail(bad)
    with pytest.raises(ValueError, match="2 GPU transcripts for 1 CPU ones"):
        fr.compare_transcripts(["a", "b"], ["a"])
    assert not fr.compare_transcripts([], []).ok()


def test_report_table():
    report = fr.Report(
        [
            fr.StageResult("versions", "pass", 0.2, "TensorRT-LLM 1.2.1"),
            fr.StageResult("export", "FAIL", 61.0, "CanaryTritonError: a | b"),
        ],
        {"tensorrt_llm": "1.2.1", "onnxruntime-gpu": None},
    )
    text = fr.format_report(report)
    assert "| versions | pass | 0.2 | TensorRT-LLM 1.2.1 |" in text
    assert "| export | FAIL | 61.0 | CanaryTritonError: a / b |" in text  # a pipe would break the table
    assert "| tensorrt_llm | 1.2.1 |" in text and "| onnxruntime-gpu | not installed |" in text
    assert text.rstrip().endswith("FAILED: export") and not report.passed
    assert fr.Report([fr.StageResult("x", "pass", 0, "")]).passed and not fr.Report().passed


def test_the_real_stage_list_covers_the_issue():
    names = [s.name for s in fr.real_stages(Path("/nonexistent"), "26.06")]
    assert names == [
        "versions",
        "export --profile gpu (tiny-trained)",
        "load-time checks",
        "tritonserver ready",
        "held-out transcripts vs CPU profile",
        "bad inputs refused",
        "cancellation",
    ]


def test_off_the_image_the_run_fails_at_versions_and_reports(tmp_path, capsys):
    """Here (no TensorRT-LLM) the first stage fails with the release error, the rest are skipped,
    and the table and first-run.json are written: exit 1."""
    code = fr.main(["--work", str(tmp_path), "--release", "26.06", "--report", str(tmp_path / "r.md")])
    out = capsys.readouterr().out
    assert code == 1
    assert "| versions | FAIL |" in out and "TensorRT-LLM is not installed" in out
    assert out.count("| skipped |") == 6 and (tmp_path / "first-run.json").is_file()
    assert (tmp_path / "r.md").read_text() == out.rstrip("\n") + "\n"


def test_bad_inputs_name_their_limits():
    cases = fr.bad_inputs(16000)
    assert len(cases) >= 3 and all(message for *_, message in cases)


def test_the_script_is_valid_bash_and_the_image_installs_it():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_first_run.sh")], check=True)
    assert (
        "COPY scripts/gpu_first_run.sh /usr/local/bin/canary-gpu-first-run" in (ROOT / "Dockerfile.triton").read_text()
    )
    assert "canary_triton.gpu.first_run" in (ROOT / "scripts" / "gpu_first_run.sh").read_text()


# -- the throughput model's predictions beside the run's measurements ----------------------------
def _throughput_record(tiny_trained_dir):
    shapes = gt.ModelShapes.from_checkpoint(inspect_checkpoint(tiny_trained_dir))
    d = gt.derive_gpu_defaults(shapes, gt.H100_SXM)
    return gt.record(shapes, "h100", gt.Assumptions(), d, tuple(gt.EXPORT_FLAGS)), d


def test_encoder_batches_from_triton_statistics():
    """Triton's JSON statistics (counts as strings), before and after one pass."""

    def stats(counts):
        return {
            "model_stats": [
                {
                    "name": "encoder",
                    "batch_stats": [
                        {"batch_size": str(b), "compute_infer": {"count": str(c), "ns": "1"}} for b, c in counts.items()
                    ],
                }
            ]
        }

    before = fr.encoder_batches(stats({1: 5, 2: 1}))
    after = fr.encoder_batches(stats({1: 7, 2: 1, 4: 3}))
    assert before == {1: 5, 2: 1} and fr.batches_delta(before, after) == {1: 2, 4: 3}
    assert fr.encoder_batches({}) == {}
    m = fr.Measured(clips=14, audio_s=28.0, wall_s=2.0, concurrency=16, encoder_batches={1: 2, 4: 3}, output_tokens=90)
    assert (m.rtfx, m.encoder_executions, m.mean_encoder_batch, m.tokens_per_s) == (14.0, 5, 14 / 5, 45.0)
    assert fr.Measured(0, 0.0, 0.0, 1, {}, 0).mean_encoder_batch is None


def test_gpu_model_for_the_device_name():
    assert fr.gpu_model_for("NVIDIA H200") == "h200"
    assert fr.gpu_model_for("NVIDIA H100 80GB HBM3") == "h100"
    assert fr.gpu_model_for("NVIDIA A100-SXM4-80GB") == "h100"  # the default data sheet


def test_predictions_beside_measurements(tiny_trained_dir):
    record, d = _throughput_record(tiny_trained_dir)
    m = fr.Measured(clips=45, audio_s=72.5, wall_s=3.1, concurrency=16, encoder_batches={1: 3, 7: 6}, output_tokens=400)
    text = fr.format_model_vs_run(record, m)
    header = text.splitlines()[0]
    assert header == "| figure | predicted (model, docs/gpu-throughput-model.md) | measured (this run) |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    p = record["predictions"]
    assert f"upper bound {p['rtfx_upper_bound']:,.0f} at LLM max batch {d.llm_max_batch} (H100 SXM" in rows["RTFx"]
    assert "23.4 (45 held-out clips, 72.5 s of audio, 16 in flight)" in rows["RTFx"]
    assert f"opt {d.encoder_opt_batch} / max {d.encoder_max_batch}" in rows["encoder batch size"]
    assert "mean 5.00, largest 7 over 9 executions (Triton statistics)" in rows["encoder batch size"]
    assert "129.0 (transcript tokens / wall time" in rows["decode tokens/s"]
    assert "not measured" in rows["GPU share encoder / prefill / decode at the bound"]
    assert "a MODEL, not a measurement" in text and "dominated by per-request overhead" in text
    # without measurements (the transcription stage failed) the predictions still print
    assert text.count("not measured") + 3 == fr.format_model_vs_run(record, None).count("not measured")
    assert "no predictions" in fr.format_model_vs_run(None, None)


def test_the_report_prints_the_comparison_before_the_verdict(tiny_trained_dir):
    record, _ = _throughput_record(tiny_trained_dir)
    table = fr.format_model_vs_run(record, None)
    report = fr.Report([fr.StageResult("versions", "pass", 0.2, "ok")], {"tensorrt_llm": "1.2.1"}, table)
    text = fr.format_report(report)
    assert table.rstrip("\n") in text and text.index(table.splitlines()[0]) > text.index("| package | version |")
    assert text.rstrip().endswith("PASSED")

"""The one-command first GPU run's logic with stand-in stages (its real stages need the image)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from canary_triton import gpu_first_run as fr

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

    stages = [fr.Stage("versions", ok("versions")), fr.Stage("export", boom, ("versions",)),
              fr.Stage("serve", ok("serve"), ("export",)), fr.Stage("unrelated", ok("unrelated"), ("versions",))]
    state = {}
    results = fr.run_stages(stages, state, clock=Clock())
    assert [(r.name, r.status) for r in results] == [("versions", "pass"), ("export", "FAIL"), ("serve", "skipped"),
                                                     ("unrelated", "pass")]
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
    report = fr.Report([fr.StageResult("versions", "pass", 0.2, "TensorRT-LLM 1.2.1"),
                        fr.StageResult("export", "FAIL", 61.0, "CanaryTritonError: a | b")],
                       {"tensorrt_llm": "1.2.1", "onnxruntime-gpu": None})
    text = fr.format_report(report)
    assert "| versions | pass | 0.2 | TensorRT-LLM 1.2.1 |" in text
    assert "| export | FAIL | 61.0 | CanaryTritonError: a / b |" in text  # a pipe would break the table
    assert "| tensorrt_llm | 1.2.1 |" in text and "| onnxruntime-gpu | not installed |" in text
    assert text.rstrip().endswith("FAILED: export") and not report.passed
    assert fr.Report([fr.StageResult("x", "pass", 0, "")]).passed and not fr.Report().passed


def test_the_real_stage_list_covers_the_issue():
    names = [s.name for s in fr.real_stages(Path("/nonexistent"), "26.06")]
    assert names == ["versions", "export --profile gpu (tiny-trained)", "load-time checks", "tritonserver ready",
                     "held-out transcripts vs CPU profile", "bad inputs refused", "cancellation"]


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
    assert "COPY scripts/gpu_first_run.sh /usr/local/bin/canary-gpu-first-run" in (ROOT / "Dockerfile.triton").read_text()
    assert "canary_triton.gpu_first_run" in (ROOT / "scripts" / "gpu_first_run.sh").read_text()

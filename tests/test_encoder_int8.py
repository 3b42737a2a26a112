"""The CPU profile's int8 encoder (``--cpu-encoder-precision int8``): a real export of the
tiny-trained checkpoint with it, its parity rows and manifest, and its transcripts against the
fp32 export's on the held-out set, in-process (the served pipeline's own pieces). fp32 is the
exact-parity setting; int8 is bounded by WER, as bf16 is for the LLM."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from canary_triton.artifacts import ExportManifest
from canary_triton.cli import main
from canary_triton.evaluation.wer import wer
from canary_triton.export.options import ExportOptions
from canary_triton.export.pipeline import export_checkpoint
from canary_triton.export.repository import RepositoryOptions
from canary_triton.runtime.cpu_profile import choose_encoder_precision

from .test_cpu_llm_bf16 import transcribe_in_process


@pytest.fixture(scope="module")
def exported_int8(tiny_trained_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained-int8")
    export_checkpoint(
        tiny_trained_dir,
        out,
        ExportOptions(
            profile="cpu",
            precision="fp32",
            cpu_encoder_precision="int8",
            repository=RepositoryOptions(encoder_threads=1, llm_threads=1),
        ),
    )
    return out


def test_an_int8_export_serves_the_quantized_encoder_and_records_it(exported_int8):
    manifest = ExportManifest.read(exported_int8)
    assert manifest.precision.encoder == "int8" and manifest.precision.llm == "fp32"
    assert manifest.files.encoder_onnx == "onnx/encoder_int8.onnx"
    assert (exported_int8 / "onnx" / "encoder.onnx").is_file()  # the fp32 graph stays beside it

    ops = {n.op_type for n in onnx.load(str(exported_int8 / "onnx" / "encoder_int8.onnx")).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, sorted(ops)
    report = json.loads((exported_int8 / "parity.json").read_text())
    assert report["passed"]
    by_stage = {}
    for row in report["rows"]:
        by_stage.setdefault(row["stage"], set()).add(row.get("precision", "fp32"))
    # mel is not the encoder's; the encoder's error carries into the projector's table
    assert by_stage["mel"] == {"fp32"} and by_stage["encoder"] == by_stage["projector"] == {"int8"}
    assert all(r["rel"] <= report["tolerances"]["int8_rel"] for r in report["rows"] if r.get("precision") == "int8")


def test_int8_encoder_wer_within_half_a_point_of_fp32_and_95_percent_identical(
    exported_trained, exported_int8, heldout
):
    clips = [a for a, _ in heldout]
    refs = [t for _, t in heldout]
    fp32 = transcribe_in_process(exported_trained, clips, torch.float32)
    int8 = transcribe_in_process(exported_int8, clips, torch.float32)
    w32, w8 = 100 * wer(refs, fp32), 100 * wer(refs, int8)
    identical = sum(a == b for a, b in zip(fp32, int8)) / len(clips)
    print(
        f"held-out WER encoder fp32 {w32:.2f}%, int8 {w8:.2f}%; identical transcripts {identical:.1%} of {len(clips)}"
    )
    assert abs(w8 - w32) <= 0.5 and identical >= 0.95


def test_auto_follows_the_llm_int8_with_bf16_fp32_with_fp32(exported_trained):
    assert choose_encoder_precision("auto", "bf16").precision == "int8"
    assert choose_encoder_precision("auto", "fp32").precision == "fp32"
    assert choose_encoder_precision("fp32", "bf16").precision == "fp32"
    assert choose_encoder_precision("int8", "fp32").precision == "int8"
    with pytest.raises(ValueError, match="cpu encoder precision must be one of auto, fp32, int8, got 'int4'"):
        choose_encoder_precision("int4", "fp32")  # the check ExportOptions makes too (one function)
    assert ExportOptions(precision="bf16").encoder_precision_choice().precision == "int8"
    assert ExportOptions(precision="fp32").encoder_precision_choice().precision == "fp32"
    # the test fixtures' fp32 export serves the fp32 graph and says why
    manifest = ExportManifest.read(exported_trained)
    assert manifest.precision.encoder == "fp32" and manifest.precision.encoder_reason.startswith(
        "auto: the LLM runs in fp32"
    )
    assert manifest.files.encoder_onnx == "onnx/encoder.onnx"


def test_int8_encoder_is_a_cpu_profile_option(capsys):
    with pytest.raises(ValueError, match="--cpu-encoder-precision int8 is for the cpu profile"):
        ExportOptions(profile="gpu", cpu_encoder_precision="int8")
    with pytest.raises(ValueError, match="cpu encoder precision must be one of auto, fp32, int8, got 'int4'"):
        ExportOptions(cpu_encoder_precision="int4")
    with pytest.raises(SystemExit) as e:
        main(["export", "ckpt", "-o", "out", "--cpu-encoder-precision", "int4"])
    assert e.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err

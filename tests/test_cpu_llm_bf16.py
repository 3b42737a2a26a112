"""The CPU profile's bf16 LLM against fp32 on the tiny-trained held-out set, in-process (the
served pipeline's own pieces: front end, ONNX encoder and projector, the in-flight batcher), and
the export's bf16 parity report. fp32 is the exact-parity setting; bf16 is bounded by WER."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.cpu_llm.batcher import ContinuousBatcher, GenerationRequest, splice_prompt_table
from canary_triton.evaluation.wer import wer
from canary_triton.export.lora import export_llm
from canary_triton.export.parity import parity_report
from canary_triton.frontend.preprocess import asr_output_limit
from canary_triton.runtime.loaders import load_llm, load_onnx, load_preprocessor, load_serving_tokenizer

SR = 16000


def transcribe_in_process(export_dir, clips, dtype: torch.dtype) -> list[str]:
    """Every clip through the served pipeline's pieces, all submitted to one engine at once."""
    pre, ids = load_preprocessor(export_dir)
    enc, proj = load_onnx(export_dir, "encoder"), load_onnx(export_dir, "projector")
    tok = load_serving_tokenizer(export_dir)
    llm = load_llm(export_dir, "llm_merged", dtype=dtype)
    emb = llm.get_input_embeddings()
    engine = ContinuousBatcher(llm, max_batch=16)
    outs = [[] for _ in clips]
    done = [threading.Event() for _ in clips]
    for i, clip in enumerate(clips):
        p = pre([clip])[0]
        encoded, n = enc.encode(p.mel[None], np.array([p.mel_length], np.int64))
        table = torch.from_numpy(proj.project(encoded[:, : int(n[0])])[0])
        with torch.no_grad():
            embeds = splice_prompt_table(emb, torch.from_numpy(p.input_ids.astype(np.int64)), table)

        def on_tokens(tokens, finished, i=i):
            outs[i].extend(tokens)
            if finished:
                done[i].set()

        engine.submit(
            GenerationRequest(
                embeds=embeds,
                end_id=ids.eos,
                on_tokens=on_tokens,
                max_new_tokens=asr_output_limit(C.DEFAULT_MAX_NEW_TOKENS, len(clip), SR),
            )
        )
    engine.start()
    try:
        assert all(d.wait(300) for d in done)
    finally:
        engine.stop()
    return [tok.decode(o) for o in outs]


def test_bf16_wer_within_half_a_point_of_fp32_and_95_percent_identical(exported_trained, heldout, oracle_trained):
    clips = [a for a, _ in heldout]
    refs = [t for _, t in heldout]
    fp32 = transcribe_in_process(exported_trained, clips, torch.float32)
    assert fp32 == oracle_trained.transcribe(clips)  # fp32 is token-identical to NeMo fp32
    bf16 = transcribe_in_process(exported_trained, clips, torch.bfloat16)
    w32, w16 = 100 * wer(refs, fp32), 100 * wer(refs, bf16)
    identical = sum(a == b for a, b in zip(fp32, bf16)) / len(clips)
    print(f"held-out WER fp32 {w32:.2f}%, bf16 {w16:.2f}%; identical transcripts {identical:.1%} of {len(clips)}")
    assert abs(w16 - w32) <= 0.5 and identical >= 0.95


def test_export_records_its_precision_and_a_bf16_export_passes_bf16_parity(exported_trained, oracle_trained, tmp_path):
    manifest = ExportManifest.read(exported_trained)
    assert manifest.precision.llm == "fp32" and manifest.options.llm_dtype == "float32"
    assert manifest.precision.reason.startswith("requested") and manifest.precision.cpu_instruction_set
    # the bf16 LLM folders beside the same front end and ONNX files: parity in bf16, as served
    for name in ("frontend", "onnx"):
        (tmp_path / name).symlink_to(exported_trained / name)
    export_llm(oracle_trained.info, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "llm_merged" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    report = parity_report(oracle_trained.model, oracle_trained.info, tmp_path, torch.bfloat16)
    llm_rows = [r for r in report["rows"] if r["stage"].startswith("llm")]
    assert report["passed"] and {r["precision"] for r in llm_rows} == {"bf16"}
    assert all(0 < r["rel"] <= report["tolerances"]["bf16_rel"] for r in llm_rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_load_llm_keeps_the_exported_dtype_unless_told(exported_trained, dtype):
    assert load_llm(exported_trained, "llm_base", dtype=dtype).dtype == dtype
    assert load_llm(exported_trained, "llm_base").dtype == torch.float32  # the export's (fp32 fixture)

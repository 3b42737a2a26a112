"""Parity of an export's CPU artifacts with NeMo's SALM (fp32, in-process): the reference
outputs on fixed probe clips (mel, encoder, projector; merged-LLM and base-LLM logits), the
artifacts' outputs on the same inputs, each row's max abs and relative difference against its
tolerance, and the report (``parity.json``) and its table (``parity.md``).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canary_triton.checkpoint.oracle import pad_batch
from canary_triton.checkpoint.reader import CheckpointInfo, checkpoint_tokenizer
from canary_triton.export.onnx_encoder import ENCODER_ONNX, PROJECTOR_ONNX
from canary_triton.frontend.features import load_front_end
from canary_triton.runtime.onnx_session import OnnxEncoderProjector

# NeMo and transformers (seconds to import) are imported by the parity steps that run them.

PARITY_REPORT = "parity.json"
PARITY_TABLE = "parity.md"
#: fp32 parity limits (max abs): features/embeddings, and LLM logits (merged vs unmerged LoRA
#: sums in another order, which grows with depth and width).
FEATURE_TOL = 1e-3
LOGIT_TOL = 1e-3
REL_TOL = 1e-4
#: bf16 LLM (CPU profile on a CPU with bf16 units): logits relative to the largest reference logit.
#: bf16 keeps 8 significant bits (relative rounding 2^-9 per value), and the error of a long sum
#: of such products grows with depth and width; NeMo fp32 is the reference.
BF16_REL_TOL = 5e-2
#: int8 encoder (dynamic quantization): its features relative to the largest reference value. A
#: sanity bound (a broken graph is off by the scale itself); accuracy is bounded by WER instead.
INT8_REL_TOL = 1e-1


#: Probe clip lengths (seconds): short, typical and the 40 s limit.
PROBE_SECONDS = (0.5, 1.0, 7.3, 20.0, 40.0)


def probe_clips(sample_rate: int, seconds: tuple[float, ...] = PROBE_SECONDS) -> list[np.ndarray]:
    """Fixed, audio-like probe signals (harmonics with an envelope, plus noise)."""
    clips = []
    for i, sec in enumerate(seconds):
        rng = np.random.default_rng(1000 + i)
        t = np.arange(int(sec * sample_rate)) / sample_rate
        x = sum(np.sin(2 * np.pi * (110 + 37 * i) * k * t + k) / k for k in range(1, 6))
        env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
        clips.append((0.1 * x * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def diff(ours, ref) -> dict[str, float]:
    """Max abs difference and the same relative to the reference's largest magnitude."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return {"max_abs": max_abs, "rel": max_abs / scale if scale > 0 else max_abs}


@torch.no_grad()
def nemo_perception_references(model, info: CheckpointInfo) -> list[dict[str, Any]]:
    """NeMo's mel, encoder output and projection of the probe clips, each alone and all batched
    (small tensors, kept so the export can free NeMo before it loads the ONNX graphs)."""
    p = model.perception
    sr = info.mel.sample_rate
    clips = probe_clips(sr)
    refs = []
    for mode, group in [*(("single", [c]) for c in clips), ("batched", clips)]:
        audio, lens = pad_batch(group)
        ref_mel, ref_mel_len = p.preprocessor(input_signal=audio, length=lens)
        ref_enc, ref_len = p.encoder(audio_signal=ref_mel, length=ref_mel_len)
        ref_enc = ref_enc.transpose(1, 2)
        refs.append(
            {
                "mode": mode,
                "seconds": [round(len(c) / sr, 3) for c in group],
                "audio": audio,
                "lens": lens,
                "mel": ref_mel,
                "mel_len": ref_mel_len,
                "enc": ref_enc,
                "enc_len": ref_len,
                "proj": p.proj(ref_enc),
            }
        )
    return refs


@torch.no_grad()
def _perception_rows(ref: dict[str, Any], front_end, runner, encoder_precision: str = "fp32") -> list[dict[str, Any]]:
    mel, mel_len = front_end(ref["audio"], ref["lens"])
    enc, enc_len = runner.encode(ref["mel"].numpy(), ref["mel_len"].numpy())
    table = runner.project(enc)
    rows = []
    for i, seconds in enumerate(ref["seconds"]):
        m, n = int(ref["mel_len"][i]), int(ref["enc_len"][i])
        lengths_equal = int(mel_len[i]) == m and int(enc_len[i]) == n
        for stage, ours, theirs in (
            ("mel", mel[i, :, :m], ref["mel"][i, :, :m]),
            ("encoder", enc[i, :n], ref["enc"][i, :n]),
            ("projector", table[i, :n], ref["proj"][i, :n]),
        ):
            rows.append(
                {
                    "stage": stage,
                    "seconds": seconds,
                    "mode": ref["mode"],
                    "lengths_equal": lengths_equal,
                    **diff(ours, theirs),
                    # the encoder's error carries into the projector's table
                    **({"precision": encoder_precision} if stage != "mel" and encoder_precision != "fp32" else {}),
                }
            )
    return rows


@torch.no_grad()
def nemo_llm_references(model, info: CheckpointInfo) -> dict[str, Any]:
    """NeMo's LLM logits for the parity report, computed while NeMo's LLM is loaded (small
    tensors, kept so the export can free NeMo's LLM before the ONNX stage): ASR mode (the 1 s
    probe spliced into the prompt, LoRA unmerged) and LLM mode (text, adapter disabled)."""
    from nemo.collections.speechlm2.models.salm import replace_placeholders_and_build_targets

    sr = info.mel.sample_rate
    clip = probe_clips(sr)[1]
    tok = checkpoint_tokenizer(info)
    prompt = tok.asr_prompt_ids()
    audio = torch.from_numpy(clip)[None]
    proj, proj_len = model.perception(input_signal=audio, input_signal_length=torch.tensor([audio.shape[1]]))
    rows_audio = proj[0, : int(proj_len[0])]
    ids = torch.tensor([prompt])
    spliced, _, mask = replace_placeholders_and_build_targets(
        input_ids=ids,
        embeds=model.embed_tokens(ids.where(ids != tok.ids.audio_placeholder, 0)),
        padding_id=tok.ids.pad,
        placeholder_id=tok.ids.audio_placeholder,
        replacements=[rows_audio],
        target_ids=None,
    )
    text_ids = torch.tensor([tok.llm_prompt_ids("Summarize the transcript in one sentence.")])
    with model.llm.disable_adapter():
        ref_text = model(model.embed_tokens(text_ids))["logits"][0]
    return {
        "seconds": round(len(clip) / sr, 3),
        "ids": ids,
        "placeholder_at": prompt.index(tok.ids.audio_placeholder),
        "rows_audio": rows_audio,
        "asr_logits": model(spliced, attention_mask=mask)["logits"][0],
        "text_ids": text_ids,
        "text_logits": ref_text,
    }


@torch.no_grad()
def perception_parity(
    refs: list[dict[str, Any]], out_dir: Path, encoder: str = ENCODER_ONNX, encoder_precision: str = "fp32"
) -> list[dict[str, Any]]:
    """Mel, encoder and projector rows against :func:`nemo_perception_references`: each probe clip
    alone and all batched (``encoder``: the served graph under ``onnx/``, in ``encoder_precision``)."""
    front_end = load_front_end(out_dir / "frontend")
    # As many threads as the NeMo references ran with: ONNX Runtime's CPU kernels split their
    # outputs between threads, not their sums, so the rows are the same as with one.
    runner = OnnxEncoderProjector(
        out_dir / "onnx" / encoder, out_dir / "onnx" / PROJECTOR_ONNX, threads=torch.get_num_threads()
    )
    return [row for ref in refs for row in _perception_rows(ref, front_end, runner, encoder_precision)]


@torch.no_grad()
def llm_parity(refs: dict[str, Any], out_dir: Path, llm_dtype: torch.dtype = torch.float32) -> list[dict[str, Any]]:
    """The exported merged and base Qwen3, one loaded at a time in ``llm_dtype`` (as served),
    against NeMo's references (:func:`nemo_llm_references`)."""
    from transformers import AutoModelForCausalLM

    precision = {"float32": "fp32", "bfloat16": "bf16"}.get(str(llm_dtype).replace("torch.", ""), str(llm_dtype))
    ids, k = refs["ids"], refs["placeholder_at"]
    merged = AutoModelForCausalLM.from_pretrained(str(out_dir / "llm_merged"), dtype=llm_dtype).eval()
    emb = merged.get_input_embeddings()
    ours_in = torch.cat([emb(ids[0, :k]), refs["rows_audio"].to(llm_dtype), emb(ids[0, k + 1 :])])[None]
    rows = [
        {
            "stage": "llm_merged_logits",
            "seconds": refs["seconds"],
            "mode": "single",
            "lengths_equal": True,
            "precision": precision,
            **diff(merged(inputs_embeds=ours_in).logits[0].float(), refs["asr_logits"]),
        }
    ]
    del merged, emb, ours_in
    gc.collect()
    base = AutoModelForCausalLM.from_pretrained(str(out_dir / "llm_base"), dtype=llm_dtype).eval()
    rows.append(
        {
            "stage": "llm_base_logits",
            "seconds": 0.0,
            "mode": "text",
            "lengths_equal": True,
            "precision": precision,
            **diff(base(input_ids=refs["text_ids"]).logits[0].float(), refs["text_logits"]),
        }
    )
    return rows


def finish_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def ok(row: dict[str, Any]) -> bool:
        if row.get("precision") == "bf16":
            return row["lengths_equal"] and row["rel"] <= BF16_REL_TOL
        if row.get("precision") == "int8":
            return row["lengths_equal"] and row["rel"] <= INT8_REL_TOL
        tol = LOGIT_TOL if row["stage"].startswith("llm") else FEATURE_TOL
        return row["lengths_equal"] and row["max_abs"] <= tol and row["rel"] <= REL_TOL

    for row in rows:
        row["ok"] = ok(row)
    return {
        "tolerances": {
            "features_max_abs": FEATURE_TOL,
            "logits_max_abs": LOGIT_TOL,
            "rel": REL_TOL,
            "bf16_rel": BF16_REL_TOL,
            "int8_rel": INT8_REL_TOL,
        },
        "rows": rows,
        "passed": all(r["ok"] for r in rows),
    }


def parity_report(model, info: CheckpointInfo, out_dir: Path, llm_dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Compare every CPU artifact with NeMo's SALM (fp32), the whole model in memory (the export
    itself runs the same steps in stages: see :func:`export_checkpoint`)."""
    return finish_report(
        perception_parity(nemo_perception_references(model, info), out_dir)
        + llm_parity(nemo_llm_references(model, info), out_dir, llm_dtype)
    )


def parity_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (written as parity.md)."""
    lines = [
        "| stage | clip (s) | mode | precision | max abs | relative | lengths equal | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['stage']} | {r['seconds']} | {r['mode']} | {r.get('precision', 'fp32')} | {r['max_abs']:.2e} | "
            f"{r['rel']:.2e} | "
            f"{r['lengths_equal']} | {'yes' if r['ok'] else 'NO'} |"
        )
    tol = report["tolerances"]
    lines.append("")
    lines.append(
        f"Tolerances: features/embeddings max abs {tol['features_max_abs']:g}, logits max abs "
        f"{tol['logits_max_abs']:g}, relative {tol['rel']:g}; bf16 LLM logits relative {tol['bf16_rel']:g}; "
        f"int8 encoder features relative {tol['int8_rel']:g}. "
        f"Passed: {report['passed']}."
    )
    return "\n".join(lines) + "\n"


def free_llm(model) -> None:
    """Drop NeMo's LLM (and its embedding) from the SALM: only the perception is needed after."""
    for name in ("llm", "embed_tokens"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            delattr(model, name)
    gc.collect()

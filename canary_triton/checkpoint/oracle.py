"""The NeMo oracle: Canary-Qwen run by NeMo's own ``SALM``, the reference every test compares to.

It loads a checkpoint folder with ``SALM.from_pretrained`` (offline, strict, ``.eval()``, fp32) and
returns, for a batch of audios, each intermediate the serving pipeline also produces: mel
features, encoder output, projected embeddings, the LLM logits of the spliced prompt, and greedy
token ids decoded with NeMo's rules (stop at ``<|im_end|>``, special tokens dropped, stripped).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from canary_triton import contract as C
from canary_triton.checkpoint.reader import (
    CONFIG_FILE,
    LLM_BACKBONE_DIR,
    WEIGHTS_FILE,
    CheckpointInfo,
    inspect_checkpoint,
)
from canary_triton.checkpoint.tokenizer import TOKENIZER_FILES

# NeMo is imported by the methods that build or run the SALM: importing it takes seconds.


@dataclass(frozen=True)
class OracleOutput:
    mel: torch.Tensor  # [B, n_mels, T_mel] (padded)
    mel_lengths: torch.Tensor  # [B]
    encoded: torch.Tensor  # [B, T_enc, d_enc] (padded)
    encoded_lengths: torch.Tensor  # [B]
    projected: torch.Tensor  # [B, T_enc, hidden] (padded)
    prompt_logits: list[torch.Tensor]  # per item [L_i, vocab]: the spliced prompt, no padding
    token_ids: list[list[int]]  # greedy, cut before the first EOS
    texts: list[str]


def pad_batch(audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(a) for a in audios], dtype=torch.long)
    batch = torch.zeros(len(audios), int(lens.max()), dtype=torch.float32)
    for i, a in enumerate(audios):
        batch[i, : len(a)] = torch.as_tensor(np.asarray(a, dtype=np.float32))
    return batch, lens


@contextmanager
def _nemo_layout(info: CheckpointInfo) -> Iterator[Path]:
    """A folder NeMo's ``from_pretrained`` loads offline: the checkpoint itself when it already
    has the tokenizer and ``llm_backbone/`` beside it, else a staging folder of symlinks."""
    p = info.paths
    if p.tokenizer_dir == p.root and p.llm_config_dir == p.root / LLM_BACKBONE_DIR:
        yield p.root
        return
    with tempfile.TemporaryDirectory(prefix="canary-oracle-") as tmp:
        stage = Path(tmp)
        os.symlink(p.config.resolve(), stage / CONFIG_FILE)
        os.symlink(p.weights.resolve(), stage / WEIGHTS_FILE)
        for f in p.tokenizer_dir.iterdir():
            if f.is_file() and f.name != CONFIG_FILE:
                os.symlink(f.resolve(), stage / f.name)
        (stage / LLM_BACKBONE_DIR).mkdir()
        os.symlink((p.llm_config_dir / CONFIG_FILE).resolve(), stage / LLM_BACKBONE_DIR / CONFIG_FILE)
        for f in TOKENIZER_FILES:
            if not (stage / f).exists():
                raise FileNotFoundError(f"{p.tokenizer_dir / f}")
        yield stage


class Oracle:
    """NeMo ``SALM`` in eval mode, fp32, with helpers that expose every intermediate."""

    def __init__(self, model, info: CheckpointInfo):
        self.model = model
        self.info = info

    @classmethod
    def from_checkpoint(cls, path: str | Path, llm_dir: str | Path | None = None) -> "Oracle":
        from nemo.collections.speechlm2.models import SALM

        info = inspect_checkpoint(path, llm_dir)
        with _nemo_layout(info) as folder, redirect_stdout(sys.stderr):  # hub mixin print()s
            model = SALM.from_pretrained(str(folder), local_files_only=True, strict=True)
        model = model.to(torch.float32).eval()
        return cls(model, info)

    # -- ids ------------------------------------------------------------------------------
    @property
    def special_ids(self) -> C.SpecialIds:
        m = self.model
        return C.SpecialIds(
            pad=m.text_pad_id,
            im_start=m.tokenizer.token_to_id(C.IM_START_TOKEN),
            im_end=m.text_eos_id,
            audio_placeholder=m.audio_locator_tag_id,
        )

    def prompt_ids(self, user_message: str) -> list[int]:
        """Prompt ids from NeMo's own ``qwen`` formatter (the path ``SALM.generate`` takes)."""
        from nemo.collections.common.prompts import PromptFormatter

        formatter = PromptFormatter.resolve(self.model.cfg.prompt_format)(self.model.tokenizer)
        turns = [{"role": "user", "content": user_message}]
        return formatter.encode_dialog(turns=turns)["input_ids"].tolist()

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.model.text_eos_id in ids:
            ids = ids[: ids.index(self.model.text_eos_id)]
        return self.model.tokenizer.ids_to_text(ids).strip()

    # -- stages ---------------------------------------------------------------------------
    @torch.no_grad()
    def mel(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.perception.preprocessor(input_signal=audio, length=lengths)

    @torch.no_grad()
    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, enc_len = self.model.perception.encoder(audio_signal=mel, length=mel_lengths)
        return enc.transpose(1, 2), enc_len

    @torch.no_grad()
    def project(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> torch.Tensor:
        p = self.model.perception
        adapted, _ = p.modality_adapter(audio_signal=encoded.transpose(1, 2), length=encoded_lengths)
        return p.proj(adapted.transpose(1, 2))

    @torch.no_grad()
    def run(self, audios: Sequence[np.ndarray], max_new_tokens: int = C.DEFAULT_MAX_NEW_TOKENS) -> OracleOutput:
        from nemo.collections.speechlm2.data.salm_dataset import left_collate_vectors
        from nemo.collections.speechlm2.models.salm import replace_placeholders_and_build_targets

        m = self.model
        audio, lens = pad_batch(audios)
        mel, mel_len = self.mel(audio, lens)
        enc, enc_len = self.encode(mel, mel_len)
        proj = self.project(enc, enc_len)
        # NeMo's whole perception must agree with the stage-by-stage path above.
        full, full_len = m.perception(input_signal=audio, input_signal_length=lens)
        if not torch.equal(full_len, enc_len) or not torch.allclose(full, proj, atol=1e-6, rtol=0):
            raise RuntimeError("oracle stages disagree with NeMo's perception forward")

        prompt = self.prompt_ids(C.ASR_INSTRUCTION)
        tokens = left_collate_vectors([torch.tensor(prompt)] * len(audios), padding_value=m.text_pad_id)
        embeds = m.embed_tokens(tokens.where(tokens != m.audio_locator_tag_id, 0))
        replacements = [proj[i, : enc_len[i]] for i in range(len(audios))]
        inputs, _, mask = replace_placeholders_and_build_targets(
            input_ids=tokens,
            embeds=embeds,
            padding_id=m.text_pad_id,
            placeholder_id=m.audio_locator_tag_id,
            replacements=replacements,
            target_ids=None,
        )
        logits = m(inputs, attention_mask=mask)["logits"]
        prompt_logits = [logits[i][mask[i]] for i in range(len(audios))]

        gen = m.generate(
            prompts=[[{"role": "user", "content": C.ASR_INSTRUCTION}]] * len(audios),
            audios=audio,
            audio_lens=lens,
            max_new_tokens=max_new_tokens,
        )
        token_ids, texts = [], []
        for row in gen.tolist():
            if m.text_eos_id in row:
                row = row[: row.index(m.text_eos_id)]
            token_ids.append(row)
            texts.append(m.tokenizer.ids_to_text(row).strip())
        return OracleOutput(mel, mel_len, enc, enc_len, proj, prompt_logits, token_ids, texts)

    @torch.no_grad()
    def transcribe(
        self, audios: Sequence[np.ndarray], batch_size: int = 16, max_new_tokens: int = C.DEFAULT_MAX_NEW_TOKENS
    ) -> list[str]:
        """Greedy transcripts through ``SALM.generate`` only (NeMo's decoding rules)."""
        m = self.model
        out: list[str] = []
        for i in range(0, len(audios), batch_size):
            chunk = audios[i : i + batch_size]
            audio, lens = pad_batch(chunk)
            gen = m.generate(
                prompts=[[{"role": "user", "content": C.ASR_INSTRUCTION}]] * len(chunk),
                audios=audio,
                audio_lens=lens,
                max_new_tokens=max_new_tokens,
            )
            out.extend(self.decode(row) for row in gen.tolist())
        return out

    @torch.no_grad()
    def llm_generate(self, texts: Sequence[str], max_new_tokens: int = C.DEFAULT_MAX_NEW_TOKENS) -> list[list[int]]:
        """LLM mode: text prompts through the base Qwen3 with the LoRA disabled, greedy."""
        m = self.model
        with m.llm.disable_adapter():
            gen = m.generate(prompts=[[{"role": "user", "content": t}] for t in texts], max_new_tokens=max_new_tokens)
        # Text-only generate() returns the left-padded prompts followed by the new tokens.
        prompt_len = max(len(self.prompt_ids(t)) for t in texts)
        rows = []
        for row in gen[:, prompt_len:].tolist():
            rows.append(row[: row.index(m.text_eos_id)] if m.text_eos_id in row else row)
        return rows

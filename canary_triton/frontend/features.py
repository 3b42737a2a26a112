"""The mel front end of Canary-Qwen, identical to NeMo >= 2.5 ``FilterbankFeatures`` in eval mode.

Centred STFT with zero padding, preemphasis with samples past the true length zeroed, power
spectrum through the checkpoint's own (BF16-rounded) filterbank, ``log(x + guard)``, per-feature
normalisation over valid frames only, frames past the valid length set to the pad value. The
filterbank and window are always the checkpoint's: recomputing them with librosa changes results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from canary_triton import contract as C

FB_KEY = "perception.preprocessor.featurizer.fb"
WINDOW_KEY = "perception.preprocessor.featurizer.window"
#: An export's front-end folder: ``fb``/``window`` as stored in the checkpoint, and the mel parameters.
MEL_WEIGHTS = "mel.safetensors"
MEL_PARAMS = "mel.json"


@dataclass(frozen=True)
class MelFrontEnd:
    params: C.MelParams
    fb: torch.Tensor  # [n_mels, n_freqs], fp32 holding the stored values
    window: torch.Tensor  # [win_length], fp32

    def __post_init__(self) -> None:
        p = self.params
        if tuple(self.fb.shape) != (p.n_mels, p.n_freqs):
            raise ValueError(f"filterbank shape {list(self.fb.shape)} != [{p.n_mels}, {p.n_freqs}]")
        if tuple(self.window.shape) != (p.win_length,):
            raise ValueError(f"window shape {list(self.window.shape)} != [{p.win_length}]")

    @classmethod
    def from_tensors(cls, params: C.MelParams, fb: torch.Tensor, window: torch.Tensor) -> "MelFrontEnd":
        fb = fb.detach().to(torch.float32)
        if fb.ndim == 3:  # NeMo stores [1, n_mels, n_freqs]
            fb = fb[0]
        return cls(params, fb.contiguous(), window.detach().to(torch.float32).contiguous())

    @classmethod
    def from_safetensors(cls, params: C.MelParams, path: str | Path) -> "MelFrontEnd":
        """Read ``fb`` and ``window`` from a checkpoint's (or an export's) safetensors file."""
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for k in (FB_KEY, WINDOW_KEY):
                if k not in keys:
                    raise KeyError(f"{path} has no {k}")
            return cls.from_tensors(params, f.get_tensor(FB_KEY), f.get_tensor(WINDOW_KEY))

    def to(self, device: torch.device | str) -> "MelFrontEnd":
        return MelFrontEnd(self.params, self.fb.to(device), self.window.to(device))

    def valid_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        p = self.params
        return torch.div(lengths + (p.n_fft // 2) * 2 - p.n_fft, p.hop_length, rounding_mode="floor").long()

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio`` [B, N] (zero-padded), ``lengths`` [B] -> features [B, n_mels, N//hop + 1], valid frames [B]."""
        p = self.params
        x = audio.to(torch.float32)
        lengths = lengths.to(device=x.device, dtype=torch.long)
        seq_len = self.valid_frames(lengths)

        timemask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        x = torch.cat((x[:, :1], x[:, 1:] - p.preemph * x[:, :-1]), dim=1)
        x = x.masked_fill(~timemask, 0.0)

        spec = torch.stft(
            x,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            center=True,
            window=self.window.to(x.device),
            return_complex=True,
            pad_mode="constant",
        )
        mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1))
        power = mag.pow(p.mag_power) if p.mag_power != 1.0 else mag
        mel = torch.matmul(self.fb.to(x.device), power)
        x = torch.log(mel + p.log_zero_guard)

        # Per-feature normalisation over the valid frames only (unbiased std + epsilon).
        batch, _, frames = x.shape
        valid = torch.arange(frames, device=x.device).unsqueeze(0).expand(batch, frames) < seq_len.unsqueeze(1)
        count = valid.sum(dim=1)
        mean = torch.where(valid.unsqueeze(1), x, 0.0).sum(dim=2) / count.unsqueeze(1)
        var = torch.sum(torch.where(valid.unsqueeze(1), x - mean.unsqueeze(2), 0.0) ** 2, dim=2) / (
            count.unsqueeze(1) - 1.0
        )
        std = torch.sqrt(var)
        std = std.masked_fill(std.isnan(), 0.0) + p.std_epsilon
        x = (x - mean.unsqueeze(2)) / std.unsqueeze(2)
        x = x.masked_fill(~valid.unsqueeze(1), p.pad_value)
        return x, seq_len


def load_front_end(folder: str | Path) -> MelFrontEnd:
    """The front end an export wrote to ``folder`` (what the preprocessor model loads)."""
    folder = Path(folder)
    params = C.MelParams(**json.loads((folder / MEL_PARAMS).read_text()))
    return MelFrontEnd.from_safetensors(params, folder / MEL_WEIGHTS)

"""Audio as users have it -> what the served model takes (16 kHz mono float32).

Files: WAV, FLAC, OGG/Vorbis, OGG/Opus and MP3 through libsndfile (``soundfile``); anything else
libsndfile cannot read goes through ``ffmpeg`` when it is on PATH. Bytes: the same, from memory.
Arrays: float or integer PCM with their sample rate (integer PCM is scaled by its type's range).
Any sample rate is resampled with soxr (HQ); multichannel audio is averaged to mono.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from canary_triton import contract as C
from canary_triton.errors import InputError
from canary_triton.frontend.audio import to_model_rate

#: File name endings treated as audio when a directory is expanded.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".webm", ".wma", ".aiff", ".aif")
MODEL_RATE = C.MelParams().sample_rate

AudioLike = Union[str, os.PathLike, bytes, np.ndarray, "tuple[np.ndarray, int]"]


@dataclass(frozen=True)
class Audio:
    """Decoded audio at the model's rate, with the name errors and results refer to."""

    samples: np.ndarray  # float32, mono, MODEL_RATE
    name: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / MODEL_RATE


def _read_with_soundfile(source) -> tuple[np.ndarray, int]:
    import soundfile as sf  # on first use, as in canary_triton/frontend/audio.py (a native library)

    data, sr = sf.read(source, dtype="float32", always_2d=True)
    return data, int(sr)


def _read_with_ffmpeg(path: Path, name: str) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise InputError(f"cannot decode audio {name}: libsndfile does not read this format and ffmpeg is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        proc = subprocess.run(
            [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-c:a", "pcm_f32le", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not out.is_file():
            reason = (proc.stderr.strip().splitlines() or ["no audio stream"])[-1]
            raise InputError(f"cannot decode audio {name}: {reason}")
        return _read_with_soundfile(str(out))


def decode_file(path: str | os.PathLike) -> Audio:
    """Decode a file (any format above, any rate, any channel count); errors name the file."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise InputError(f"audio file {name} does not exist")
    try:
        data, sr = _read_with_soundfile(str(path))
    except Exception as sf_error:  # noqa: BLE001  libsndfile's reason, or a format it does not know
        if shutil.which("ffmpeg") is None:
            raise InputError(f"cannot decode audio file {name}: {sf_error}") from None
        data, sr = _read_with_ffmpeg(path, name)
    return _finish(data, sr, name)


def decode_bytes(raw: bytes, name: str = "<bytes>") -> Audio:
    """Decode an encoded file held in memory (WAV/FLAC/OGG/MP3 bytes; ffmpeg for the rest)."""
    if not raw:
        raise InputError(f"audio {name} is empty (0 bytes)")
    try:
        data, sr = _read_with_soundfile(io.BytesIO(raw))
    except Exception as sf_error:  # noqa: BLE001
        if shutil.which("ffmpeg") is None:
            raise InputError(f"cannot decode audio {name}: {sf_error}") from None
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(raw)
            f.flush()
            data, sr = _read_with_ffmpeg(Path(f.name), name)
    return _finish(data, sr, name)


def from_array(samples: np.ndarray, sample_rate: int, name: str = "<array>") -> Audio:
    """Samples (1-D, or samples x channels) at ``sample_rate``; integer PCM scaled to [-1, 1)."""
    x = np.asarray(samples)
    if x.dtype.kind not in "fiu":
        raise InputError(f"audio {name} must be float or integer PCM, got dtype {x.dtype}")
    if x.dtype.kind == "u":  # unsigned PCM (8-bit WAV): centred on the type's midpoint
        half = float(np.iinfo(x.dtype).max + 1) / 2
        x = ((x.astype(np.float64) - half) / half).astype(np.float32)
    if x.ndim == 2 and x.shape[0] < x.shape[1] and x.shape[0] <= 8:
        x = x.T  # channels first (as torchaudio/librosa give): make it samples x channels
    return _finish(x, int(sample_rate), name)


def _finish(data: np.ndarray, sr: int, name: str) -> Audio:
    """Resample and downmix. Length and value limits are the server's to check (one rule, one
    message): an empty or NaN-holding clip is sent as it is and refused there."""
    if sr <= 0:
        raise InputError(f"audio {name} has sample rate {sr}; it must be positive")
    if data.size == 0:
        return Audio(np.zeros(0, np.float32), name)
    samples = to_model_rate(data, sr, MODEL_RATE)
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), name)


def as_audio(source: AudioLike | Audio, sample_rate: int | None = None, name: str | None = None) -> Audio:
    """Anything a user may hand over: a path, encoded bytes, ``(array, rate)`` or an array.

    A bare array needs ``sample_rate`` unless it is already at the model's 16 kHz (then pass
    ``sample_rate=16000`` or leave it out, which means 16 kHz).
    """
    if isinstance(source, Audio):
        return source
    if isinstance(source, (str, os.PathLike)):
        return decode_file(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name or "<bytes>")
    if isinstance(source, tuple) and len(source) == 2:
        samples, sr = source
        return from_array(samples, int(sr), name or "<array>")
    if isinstance(source, np.ndarray):
        return from_array(source, sample_rate or MODEL_RATE, name or "<array>")
    raise InputError(f"cannot use {type(source).__name__} as audio: pass a path, bytes, an array or (array, rate)")


def expand_paths(items: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, globs (``**`` recursive) and directories (their audio files, recursively), sorted
    within each item and without duplicates. A pattern or path that matches nothing is an error."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            matches = [Path(text)]
        if not matches:
            raise InputError(f"{text} matches no audio file")
        for p in matches:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out

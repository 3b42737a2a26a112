"""Shared fixtures: one pytest session builds tiny-random once and loads each oracle once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from canary_triton.cli import DEMO_CHECKPOINT, DEMO_HELDOUT  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SR = 16000


@pytest.fixture(scope="session")
def tiny_random_dir(tmp_path_factory) -> Path:
    from canary_triton.fixtures.tiny import make_tiny_random

    return make_tiny_random(tmp_path_factory.mktemp("ckpt") / "tiny-random", seed=1234)


@pytest.fixture(scope="session")
def tiny_trained_dir() -> Path:
    assert (DEMO_CHECKPOINT / "model.safetensors").is_file(), "the committed tiny-trained checkpoint is missing"
    return DEMO_CHECKPOINT


@pytest.fixture(scope="session")
def oracle_random(tiny_random_dir):
    from canary_triton.oracle import Oracle

    return Oracle.from_checkpoint(tiny_random_dir)


@pytest.fixture(scope="session")
def oracle_trained(tiny_trained_dir):
    from canary_triton.oracle import Oracle

    return Oracle.from_checkpoint(tiny_trained_dir)


@pytest.fixture(scope="session")
def heldout():
    """The committed held-out renditions of the tiny-trained speech set: (audio, text) pairs."""
    from canary_triton.audio import load_audio
    from canary_triton.fixtures.speech import read_manifest

    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
    return [(load_audio(r["audio_filepath"], SR), r["text"]) for r in rows]


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """A deterministic test clip: harmonic tones with an envelope plus noise (not silence)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 100 + 80 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6.28) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (1 + 3 * rng.random()) * t)
    return (0.1 * x * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _served(export_dir: Path, tmp: Path):
    from canary_triton.server import ServerOptions, TritonServer

    opts = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
    return TritonServer(export_dir / "model_repository", opts, workdir=tmp, log_path=tmp / "tritonserver.log")


#: The tiny fixtures know single short utterances only, so long-form segments hold one utterance
#: each (merge target 0.5 s); the real model's default merges speech up to 30 s.
TINY_LONG_FORM_MERGE_S = 0.5


def _export(checkpoint: Path, out: Path) -> Path:
    from canary_triton.export.pipeline import ExportOptions, export_checkpoint
    from canary_triton.export.repository import RepositoryOptions

    # fp32: the token-equality tests against NeMo fp32 must not depend on the CI machine's CPU
    # (auto would pick bf16 where it has bf16 units); one thread per model: the tiny models only
    # lose from more on a shared machine.
    repo = RepositoryOptions(long_form_merge_s=TINY_LONG_FORM_MERGE_S, encoder_threads=1, llm_threads=1)
    export_checkpoint(checkpoint, out, ExportOptions(profile="cpu", precision="fp32", repository=repo))
    return out


@pytest.fixture(scope="session")
def exported_trained(tiny_trained_dir, tmp_path_factory) -> Path:
    return _export(tiny_trained_dir, tmp_path_factory.mktemp("served-trained"))


@pytest.fixture(scope="session")
def exported_random(tiny_random_dir, tmp_path_factory) -> Path:
    return _export(tiny_random_dir, tmp_path_factory.mktemp("served-random"))


@pytest.fixture(scope="session")
def server_trained(exported_trained, tmp_path_factory):
    """One tritonserver (pytriton's binary, CPU) on the tiny-trained export for the whole session."""
    with _served(exported_trained, tmp_path_factory.mktemp("triton-trained")) as server:
        yield server


@pytest.fixture(scope="session")
def server_random(exported_random, tmp_path_factory):
    with _served(exported_random, tmp_path_factory.mktemp("triton-random")) as server:
        yield server

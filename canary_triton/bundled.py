"""Paths of the data bundled in the wheel (``canary_triton/assets/``): the demo checkpoint and its
held-out speech. One place for them: the CLI's demo, the watchdog's probe, the GPU first run, the
tests and the benchmarks read them from here."""

from __future__ import annotations

from pathlib import Path

#: the data folder shipped with the package (``[tool.setuptools.package-data]`` in pyproject.toml)
ASSETS = Path(__file__).resolve().parent / "assets"
#: the tiny-trained checkpoint (a SALM checkpoint folder: config.json, model.safetensors, tokenizer)
DEMO_CHECKPOINT = ASSETS / "tiny-trained"
#: its held-out clips (``heldout_NNN.flac``) and their NeMo manifest (``manifest.jsonl``)
DEMO_HELDOUT = ASSETS / "speech" / "heldout"
#: one held-out clip: the demo's default audio and the watchdog's probe
DEMO_SAMPLE = DEMO_HELDOUT / "heldout_000.flac"

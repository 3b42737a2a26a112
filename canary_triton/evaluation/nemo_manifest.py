"""NeMo manifests (JSON lines): ``audio_filepath``, ``duration``, optional ``text``.

Relative ``audio_filepath`` values resolve against the manifest's folder (NeMo resolves them the
same way for manifests that travel with their audio). Errors name the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from canary_triton.errors import InputError

AUDIO_KEY = "audio_filepath"
DURATION_KEY = "duration"
TEXT_KEY = "text"
PRED_KEY = "pred_text"  # what NeMo's transcribe_speech.py writes
WER_KEY = "wer"


def read_manifest(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"manifest {path} line {n} is not JSON: {e.msg}") from None
        if not isinstance(row, dict) or AUDIO_KEY not in row:
            raise InputError(f"manifest {path} line {n} has no '{AUDIO_KEY}'")
        p = Path(row[AUDIO_KEY])
        row[AUDIO_KEY] = str(p if p.is_absolute() else path.parent / p)
        rows.append(row)
    return rows


def write_manifest(path: str | Path, rows: Iterable[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path

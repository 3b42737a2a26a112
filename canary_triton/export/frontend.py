"""The export's front end: the mel filterbank and window exactly as stored in the checkpoint
(read back by :func:`canary_triton.frontend.features.load_front_end`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from canary_triton.checkpoint.reader import CheckpointInfo
from canary_triton.frontend.features import FB_KEY, MEL_PARAMS, MEL_WEIGHTS, WINDOW_KEY


def export_front_end(info: CheckpointInfo, out_dir: str | Path) -> Path:
    """Copy ``fb``/``window`` bit for bit (their stored dtype, BF16 in the real checkpoint)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with safe_open(str(info.paths.weights), framework="pt") as f:
        tensors = {k: f.get_tensor(k).contiguous() for k in (FB_KEY, WINDOW_KEY)}
    save_file(tensors, str(out_dir / MEL_WEIGHTS))
    (out_dir / MEL_PARAMS).write_text(json.dumps(asdict(info.mel), indent=2))
    return out_dir

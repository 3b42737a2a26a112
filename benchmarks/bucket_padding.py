"""Padding overhead of mel length buckets: extra mel frames the encoder computes, in percent.

The preprocessor pads each clip's mel features to a multiple of the bucket width (capped at the
40 s tensor) so the encoder's dynamic batcher can group clips of one bucket (C.bucketed_columns).
The cost is the padded frames: ``sum(bucketed columns) / sum(columns) - 1``. Reported for the
bundled held-out set (its clip lengths) and for a uniform 1-40 s mix (seeded), for each width.
Pure arithmetic on clip lengths, no model runs. Usage:

    python -m benchmarks.bucket_padding [--widths 0.5,1,2,4] [--uniform-clips 10000] [--seed 0]
        [--manifest M.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.bundled import DEMO_HELDOUT

# soundfile is imported where the clips' lengths are read.


def overhead_percent(samples: Sequence[int], bucket_seconds: float, mel: C.MelParams = C.MelParams()) -> float:
    """Extra mel frames from bucket padding, in percent of the unpadded frames."""
    width = C.mel_bucket_columns(bucket_seconds, mel)
    cols = [C.mel_columns(int(n), mel) for n in samples]
    padded = [C.bucketed_columns(c, width, mel) for c in cols]
    return 100.0 * (sum(padded) / sum(cols) - 1.0)


def manifest_samples(manifest: Path, sample_rate: int) -> list[int]:
    import soundfile as sf

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    out = []
    for r in rows:
        path = Path(r["audio_filepath"])
        if not path.is_absolute():
            path = manifest.parent / path
        info = sf.info(str(path))
        out.append(int(round(info.frames * sample_rate / info.samplerate)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="0.5,1,2,4", help="bucket widths in seconds, comma-separated")
    p.add_argument("--uniform-clips", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--manifest", type=Path, default=DEMO_HELDOUT / "manifest.jsonl")
    args = p.parse_args(argv)
    mel = C.MelParams()
    try:
        widths = [float(w) for w in args.widths.split(",")]
        for w in widths:
            C.mel_bucket_columns(w, mel)
    except ValueError as e:
        print(f"error: --widths: {e}", file=sys.stderr)
        return 2
    heldout = manifest_samples(args.manifest, mel.sample_rate)
    rng = np.random.default_rng(args.seed)
    uniform = (rng.uniform(1.0, C.MAX_AUDIO_SECONDS, args.uniform_clips) * mel.sample_rate).astype(int)
    sets = {
        f"held-out ({len(heldout)} clips, "
        f"{min(heldout) / mel.sample_rate:.1f}-{max(heldout) / mel.sample_rate:.1f} s)": heldout,
        f"uniform 1-40 s ({len(uniform)} clips, seed {args.seed})": uniform.tolist(),
    }
    print("| set | " + " | ".join(f"{w:g} s buckets" for w in widths) + " |")
    print("|---|" + "---|" * len(widths))
    for name, samples in sets.items():
        print(f"| {name} | " + " | ".join(f"+{overhead_percent(samples, w, mel):.1f} %" for w in widths) + " |")
    print(
        f"\nDefault width: {C.DEFAULT_MEL_BUCKET_SECONDS:g} s. Extra frames = padded mel frames the "
        "encoder computes beyond the clips' own (arithmetic, not a timing)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

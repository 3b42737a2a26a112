"""ModelOpt AutoCast on an encoder ONNX, then ONNX Runtime: is the encoded length right for every mel length?

AutoCast (modelopt 0.37) sends every float node not excluded to bf16; the encoder's length
arithmetic from ``mel_length`` (NeMo's ``calc_length``) then gives wrong lengths. The GPU export
excludes the nodes :func:`canary_triton.export.tensorrt_engine.length_nodes` finds. This script
converts the fp32 encoder ONNX with the export's own settings, cuts the ``mel_length ->
encoded_length`` subgraph out of the converted model and runs it in ONNX Runtime for every mel
length from 1 to ``--max-mel`` at once, against the contract's formula. ``--unexcluded`` converts
once more without the exclusion and evaluates that subgraph with onnx's reference evaluator (ONNX
Runtime's CPU provider has no bf16 Add), to show what the exclusion prevents.

Needs ``nvidia-modelopt[onnx]==0.37.*`` (the GPU image's; not in the CPU test environment: exit 3
there). Usage::

    python -m benchmarks.autocast_lengths --onnx EXPORT/onnx/encoder.onnx [--unexcluded]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from canary_triton import contract as C
from canary_triton.export.tensorrt_engine import autocast_settings, length_nodes


def _lengths_of(model, lengths, runtime: str):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    from onnx.utils import Extractor

    sub = Extractor(model).extract_model([C.MEL_LENGTH.name], [C.ENCODED_LENGTH.name])
    if runtime == "onnxruntime":
        session = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {C.MEL_LENGTH.name: lengths})[0]
    return ReferenceEvaluator(sub).run(None, {C.MEL_LENGTH.name: lengths})[0]


def check(onnx_path: Path, precision: str, max_mel: int, exclude: bool) -> dict:
    """Convert ``onnx_path`` (the length nodes excluded or not) and count wrong encoded lengths."""
    import numpy as np
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    keep = length_nodes(graph) if exclude else []
    model = convert_to_mixed_precision(onnx_path=str(onnx_path), **autocast_settings(precision, keep))
    with tempfile.TemporaryDirectory() as tmp:  # the converted graph round-trips as AutoCast's caller saves it
        path = Path(tmp) / "converted.onnx"
        onnx.save(model, str(path))
        model = onnx.load(str(path))
    lengths = np.arange(1, max_mel + 1, dtype=np.int64)
    want = np.array([C.num_encoder_frames(int(n)) for n in lengths])
    runtime = "onnxruntime" if exclude else "onnx.reference"
    got = np.asarray(_lengths_of(model, lengths, runtime)).reshape(-1)
    wrong = np.nonzero(got != want)[0]
    return {
        "excluded_nodes": len(keep),
        "runtime": runtime,
        "mel_lengths": int(max_mel),
        "wrong": int(len(wrong)),
        "max_off": int(np.abs(got - want).max()) if len(wrong) else 0,
        "examples": [(int(lengths[i]), int(got[i]), int(want[i])) for i in wrong[-3:]],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autocast_lengths", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--onnx", type=Path, required=True, help="the fp32 encoder ONNX (an export's onnx/encoder.onnx)"
    )
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--max-mel", type=int, default=C.max_mel_columns(C.MelParams()), help="largest mel length")
    parser.add_argument("--unexcluded", action="store_true", help="also convert without the exclusion")
    args = parser.parse_args(argv)
    try:
        import modelopt.onnx.autocast  # noqa: F401
    except ImportError as e:
        print(
            f"error: ModelOpt AutoCast is not importable ({e}): pip install 'nvidia-modelopt[onnx]==0.37.*'",
            file=sys.stderr,
        )
        return 3
    rows = [("length nodes excluded", check(args.onnx, args.precision, args.max_mel, exclude=True))]
    if args.unexcluded:
        rows.append(("Softmax only excluded", check(args.onnx, args.precision, args.max_mel, exclude=False)))
    head = f"| AutoCast {args.precision} | nodes excluded | evaluated by | wrong of {args.max_mel} lengths |"
    print(head + " max off | e.g. (mel, got, want) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['excluded_nodes']} | {r['runtime']} | {r['wrong']} | {r['max_off']} | {r['examples']} |")
    return 1 if rows[0][1]["wrong"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

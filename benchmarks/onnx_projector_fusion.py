"""Encoder and projector as two ONNX models (two Triton steps) vs one fused model, on ONNX Runtime CPU.

Prints the measured time of each layout and their ratio, and checks that both give the same
embeddings. Usage:

    python -m benchmarks.onnx_projector_fusion CHECKPOINT [--batch 4 --seconds 10 --repeats 5 --threads 1]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from canary_triton.checkpoint.reader import load_salm
from canary_triton.export.onnx_encoder import EncoderForExport, export_onnx, to_onnx
from canary_triton.runtime.onnx_session import ONNX_IN_MEL, ONNX_IN_MEL_LENGTH, ONNX_OUT_TABLE, OnnxEncoderProjector

# onnxruntime and NeMo (seconds to import) are imported by the measurement itself.


class Fused(torch.nn.Module):
    def __init__(self, encoder, proj):
        super().__init__()
        self.enc = EncoderForExport(encoder)
        self.proj = proj

    def forward(self, mel, mel_length):
        encoded, length = self.enc(mel, mel_length)
        return self.proj(encoded), length


def main() -> int:
    import onnxruntime as ort
    from nemo.core.classes.common import typecheck

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, info = load_salm(a.checkpoint)
    frames = int(a.seconds * info.mel.sample_rate) // info.mel.hop_length + 1
    mel = np.random.default_rng(0).standard_normal((a.batch, info.mel.n_mels, frames)).astype(np.float32)
    lens = np.full((a.batch,), frames - 1, dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        ex = export_onnx(model, tmp)
        two = OnnxEncoderProjector(ex.encoder, ex.projector, threads=a.threads)
        fused_path = Path(tmp) / "fused.onnx"
        fused = Fused(model.perception.encoder, model.perception.proj).eval()
        with torch.no_grad(), typecheck.disable_checks():
            to_onnx(
                fused,
                (torch.from_numpy(mel[:2, :, :320]), torch.tensor([320, 250])),
                fused_path,
                {ONNX_IN_MEL: {0: "b", 2: "t"}, ONNX_IN_MEL_LENGTH: {0: "b"}},
                {ONNX_OUT_TABLE: {0: "b", 1: "f"}, "encoded_length": {0: "b"}},
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = a.threads
        one = ort.InferenceSession(str(fused_path), opts, providers=["CPUExecutionProvider"])

        def run_two():
            enc, _ = two.encode(mel, lens)
            return two.project(enc)

        def run_one():
            return one.run(None, {ONNX_IN_MEL: mel, ONNX_IN_MEL_LENGTH: lens})[0]

        diff = float(np.abs(run_two() - run_one()).max())
        timings = {}
        for name, fn in (("separate", run_two), ("fused", run_one)):
            fn()  # warm-up, excluded
            t0 = time.perf_counter()
            for _ in range(a.repeats):
                fn()
            timings[name] = (time.perf_counter() - t0) / a.repeats
    print(
        f"machine: {platform.processor() or platform.machine()}, {a.threads} thread(s); checkpoint {a.checkpoint} "
        f"(encoder d={info.encoder_dim}); batch {a.batch} x {a.seconds:g} s; mean of {a.repeats} runs after 1 warm-up"
    )
    print(
        f"separate encoder+projector: {timings['separate'] * 1e3:.2f} ms; fused: {timings['fused'] * 1e3:.2f} ms; "
        f"separate/fused time ratio {timings['separate'] / timings['fused']:.3f}; max abs diff {diff:.2e}"
    )
    return 0 if diff <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())

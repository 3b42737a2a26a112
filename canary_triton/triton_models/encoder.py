"""Triton model `encoder` (CPU profile): mel -> FastConformer output with ONNX Runtime.

Each request is checked on its own (a direct caller's bad tensor fails that request only); the
valid ones run as one padded batch."""

from __future__ import annotations

import numpy as np

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.model_params import EncoderParams
from canary_triton.runtime.cpu_profile import resolve_threads
from canary_triton.runtime.loaders import load_onnx
from canary_triton.triton_models.adapter import artifacts_dir, pad_stack, read_params, scalar_array
from canary_triton.triton_models.base import BatchedModel
from canary_triton.triton_models.tensor_checks import check_mel


class EncoderModel(BatchedModel):
    def initialize(self, args):
        params = read_params(args, EncoderParams)
        export = artifacts_dir(args, params)
        threads = resolve_threads(params.threads, "encoder")
        self.runner = load_onnx(export, "encoder", threads=threads)
        manifest = ExportManifest.read(export)
        self.pb.Logger.log_info(f"encoder: ONNX Runtime {manifest.precision.encoder}, {threads} thread(s)")
        mel = manifest.model.mel
        self.n_mels = mel.n_mels
        self.max_frames = C.num_mel_frames(C.max_audio_samples(mel), mel) + 1

    def check(self, request):
        """(mel [n_mels, T], its length)."""
        return check_mel(
            self.input(request, C.MEL.name), self.input(request, C.MEL_LENGTH.name), self.n_mels, self.max_frames
        )

    def run(self, items):
        encoded, enc_len = self.runner.encode(
            pad_stack([m for m, _ in items], axis=1).astype(np.float32), np.array([n for _, n in items], dtype=np.int64)
        )
        out = []
        for k in range(len(items)):
            n = int(enc_len[k])
            out.append(
                [
                    self.pb.Tensor(C.ENCODED.name, np.ascontiguousarray(encoded[k : k + 1, :n])),
                    self.pb.Tensor(C.ENCODED_LENGTH.name, scalar_array(n, np.int64)),
                ]
            )
        return out

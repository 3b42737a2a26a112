"""Triton model `projector` (CPU profile): encoder output -> LLM-space prompt table (ONNX Runtime).

Each request is checked on its own; the valid ones run as one padded batch."""

from __future__ import annotations

import numpy as np

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.model_params import ProjectorParams
from canary_triton.runtime.loaders import load_onnx
from canary_triton.triton_models.adapter import artifacts_dir, pad_stack, read_params, scalar_array
from canary_triton.triton_models.base import BatchedModel
from canary_triton.triton_models.tensor_checks import check_encoded


class ProjectorModel(BatchedModel):
    def initialize(self, args):
        params = read_params(args, ProjectorParams)
        export = artifacts_dir(args, params)
        self.runner = load_onnx(export, "projector", threads=params.threads)
        manifest = ExportManifest.read(export)
        self.dim = manifest.model.encoder_dim
        self.max_frames = manifest.limits.max_table_rows

    def check(self, request):
        """The encoder output [T, dim]."""
        return check_encoded(self.input(request, C.ENCODED.name), self.dim, self.max_frames)

    def run(self, items):
        table = self.runner.project(pad_stack(items, axis=0).astype(np.float32))
        return [
            [
                self.pb.Tensor(C.PROMPT_EMBEDDING_TABLE.name, np.ascontiguousarray(table[k : k + 1, : len(e)])),
                self.pb.Tensor(C.PROMPT_VOCAB_SIZE.name, scalar_array(len(e))),
            ]
            for k, e in enumerate(items)
        ]

"""Triton model `projector` (CPU profile): encoder output -> LLM-space prompt table (ONNX Runtime).

Each request is checked on its own; the valid ones run as one padded batch."""

from __future__ import annotations

import numpy as np

from .. import contract as C
from ..artifacts import ExportManifest
from ..loaders import load_onnx
from ..model_params import ProjectorParams
from ..tensor_checks import check_encoded
from ..triton_adapter import artifacts_dir, pad_stack, read_params, scalar_array
from .base import BatchedModel


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

"""Triton model `projector` (CPU profile): encoder output -> LLM-space prompt table (thin adapter).

Each request is checked on its own; the valid ones run as one padded batch."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.serving import load_onnx, read_manifest  # noqa: E402
from canary_triton.tensor_checks import check_encoded  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters, pad_stack  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        export = artifacts_dir(args, params)
        self.runner = load_onnx(export, "projector", threads=int(params.get("threads", "1")))
        manifest = read_manifest(export)
        self.dim = int(manifest["model"]["encoder_dim"])
        self.max_frames = int(manifest["limits"]["max_table_rows"])

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []
        for i, r in enumerate(requests):
            try:
                valid.append((i, check_encoded(input_array(pb_utils, r, C.ENCODED.name), self.dim, self.max_frames)))
            except Exception as e:  # noqa: BLE001
                responses[i] = error_response(pb_utils, e)
        if not valid:
            return responses
        try:
            table = self.runner.project(pad_stack([e for _, e in valid], axis=0).astype(np.float32))
        except Exception as e:  # noqa: BLE001
            for i, _ in valid:
                responses[i] = error_response(pb_utils, e)
            return responses
        for k, (i, e) in enumerate(valid):
            responses[i] = pb_utils.InferenceResponse([
                pb_utils.Tensor(C.PROMPT_EMBEDDING_TABLE.name, np.ascontiguousarray(table[k : k + 1, : len(e)])),
                pb_utils.Tensor(C.PROMPT_VOCAB_SIZE.name, np.array([[len(e)]], dtype=np.int32)),
            ])
        return responses

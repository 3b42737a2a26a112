"""Triton model `projector` (CPU profile): encoder output -> LLM-space prompt table (thin adapter)."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.serving import load_onnx  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters, pad_stack  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.runner = load_onnx(artifacts_dir(args, params), "projector", threads=int(params.get("threads", "1")))

    def execute(self, requests):
        try:
            encoded = [input_array(pb_utils, r, C.ENCODED.name)[0] for r in requests]
            table = self.runner.project(pad_stack(encoded, axis=0).astype(np.float32))
        except Exception as e:  # noqa: BLE001
            return [error_response(pb_utils, e) for _ in requests]
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor(C.PROMPT_EMBEDDING_TABLE.name, np.ascontiguousarray(table[i : i + 1, : len(e)])),
                pb_utils.Tensor(C.PROMPT_VOCAB_SIZE.name, np.array([[len(e)]], dtype=np.int32)),
            ])
            for i, e in enumerate(encoded)
        ]

"""Triton model `llm_unary`: the unary (non-decoupled) face of the decoupled `llm` for the ensemble.

Triton refuses plain HTTP/gRPC requests to an ensemble holding a decoupled step, and streaming
needs `llm` decoupled (as TensorRT-LLM's `decoupled_mode`). This adapter forwards the request to
`llm` through BLS on a worker thread, gathers its responses and answers once: `execute` returns at
once, so requests keep flowing into the in-flight batch.
"""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.triton_adapter import ThreadedModel, bls_error, forward_tokens, model_parameters  # noqa: E402

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        self.target = params.get("llm_model", C.LLM_MODEL)
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            inputs = [t for t in request.inputs() if t.name() != C.STREAMING.name]
            tokens = []
            for piece in forward_tokens(pb_utils, self.target, inputs):
                tokens.extend(piece)
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor(C.OUTPUT_IDS.name, np.asarray(tokens, dtype=np.int32).reshape(1, 1, len(tokens))),
                pb_utils.Tensor(C.SEQUENCE_LENGTH.name, np.array([[len(tokens)]], dtype=np.int32)),
            ]), flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)


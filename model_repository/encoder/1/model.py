"""Triton model `encoder` (CPU profile): mel -> FastConformer output with ONNX Runtime (thin adapter)."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.serving import load_onnx  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters, pad_stack  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.runner = load_onnx(artifacts_dir(args, params), "encoder", threads=int(params.get("threads", "1")))

    def execute(self, requests):
        try:
            mels = [input_array(pb_utils, r, C.MEL.name)[0] for r in requests]
            lengths = np.array([int(input_array(pb_utils, r, C.MEL_LENGTH.name).reshape(-1)[0]) for r in requests],
                               dtype=np.int64)
            encoded, enc_len = self.runner.encode(pad_stack(mels, axis=1).astype(np.float32), lengths)
        except Exception as e:  # noqa: BLE001
            return [error_response(pb_utils, e) for _ in requests]
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor(C.ENCODED.name, np.ascontiguousarray(encoded[i : i + 1, : int(n)])),
                pb_utils.Tensor(C.ENCODED_LENGTH.name, np.array([[n]], dtype=np.int64)),
            ])
            for i, n in enumerate(enc_len.tolist())
        ]

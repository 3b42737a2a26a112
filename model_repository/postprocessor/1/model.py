"""Triton model `postprocessor`: token ids -> text with NeMo's rules (thin adapter)."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.serving import load_serving_tokenizer, read_manifest  # noqa: E402
from canary_triton.tensor_checks import check_output_ids  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        export = artifacts_dir(args, model_parameters(args))
        self.tokenizer = load_serving_tokenizer(export)
        self.vocab_rows = int(read_manifest(export)["model"]["vocab_rows"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                ids = check_output_ids(input_array(pb_utils, request, C.OUTPUT_IDS.name),  # [1, beams, L]
                                       input_array(pb_utils, request, C.SEQUENCE_LENGTH.name),  # [1, beams]
                                       self.vocab_rows)
                text = self.tokenizer.decode(ids)
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor(C.TRANSCRIPT.name, np.array([[text.encode("utf-8")]], dtype=np.object_)),
                ]))
            except Exception as e:  # noqa: BLE001
                responses.append(error_response(pb_utils, e))
        return responses

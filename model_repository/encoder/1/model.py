"""Triton model `encoder` (CPU profile): mel -> FastConformer output with ONNX Runtime (thin adapter).

Each request is checked on its own (a direct caller's bad tensor fails that request only); the
valid ones run as one padded batch."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.cpu_profile import resolve_threads  # noqa: E402
from canary_triton.serving import export_mel_params, load_onnx  # noqa: E402
from canary_triton.tensor_checks import check_mel  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters, pad_stack  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        export = artifacts_dir(args, params)
        threads = resolve_threads(params.get("threads"), "encoder")
        self.runner = load_onnx(export, "encoder", threads=threads)
        pb_utils.Logger.log_info(f"encoder: ONNX Runtime fp32, {threads} thread(s)")
        mel = export_mel_params(export)
        self.n_mels = mel.n_mels
        self.max_frames = C.num_mel_frames(C.max_audio_samples(mel), mel) + 1

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []
        for i, r in enumerate(requests):
            try:
                valid.append((i, *check_mel(input_array(pb_utils, r, C.MEL.name),
                                            input_array(pb_utils, r, C.MEL_LENGTH.name), self.n_mels, self.max_frames)))
            except Exception as e:  # noqa: BLE001
                responses[i] = error_response(pb_utils, e)
        if not valid:
            return responses
        try:
            encoded, enc_len = self.runner.encode(pad_stack([m for _, m, _ in valid], axis=1).astype(np.float32),
                                                  np.array([n for _, _, n in valid], dtype=np.int64))
        except Exception as e:  # noqa: BLE001
            for i, _, _ in valid:
                responses[i] = error_response(pb_utils, e)
            return responses
        for k, (i, _, _) in enumerate(valid):
            n = int(enc_len[k])
            responses[i] = pb_utils.InferenceResponse([
                pb_utils.Tensor(C.ENCODED.name, np.ascontiguousarray(encoded[k : k + 1, :n])),
                pb_utils.Tensor(C.ENCODED_LENGTH.name, np.array([[n]], dtype=np.int64)),
            ])
        return responses

"""Triton model `preprocessor`: 16 kHz audio -> mel features + ASR prompt ids (thin adapter).

With the VAD gate on (parameter `vad_gate`, export --vad-gate; off by default: exact NeMo
parity), a clip where the long-form segmenter's detector finds no speech gets
request_output_len = contract.NO_SPEECH_OUTPUT_LEN, and the LLM is not run for it."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.preprocess import asr_output_limit, validate_audio, validate_max_new_tokens  # noqa: E402
from canary_triton.segmenter import SegmentOptions, has_speech, prepare  # noqa: E402
from canary_triton.serving import load_preprocessor  # noqa: E402
from canary_triton.triton_adapter import artifacts_dir, error_response, input_array, model_parameters  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        torch.set_num_threads(int(params.get("threads", "1")))
        bucket = params.get("mel_bucket_seconds")
        self.pre, self.ids = load_preprocessor(artifacts_dir(args, params), None if bucket is None else float(bucket))
        self.gate = SegmentOptions.from_parameters(params) if params.get("vad_gate") == "true" else None
        if self.gate is not None:
            prepare(self.gate)

    def execute(self, requests):
        responses = [None] * len(requests)
        valid = []
        for i, request in enumerate(requests):
            try:
                audio = validate_audio(input_array(pb_utils, request, C.AUDIO.name), self.pre.limits)
                limit = validate_max_new_tokens(input_array(pb_utils, request, C.MAX_NEW_TOKENS.name, optional=True))
                limit = asr_output_limit(limit, len(audio), self.pre.limits.sample_rate)  # hallucination guard
                if self.gate is not None and not has_speech(audio, self.pre.limits.sample_rate, self.gate):
                    limit = C.NO_SPEECH_OUTPUT_LEN
                valid.append((i, audio, limit))
            except Exception as e:  # noqa: BLE001 - every failure becomes this request's error
                responses[i] = error_response(pb_utils, e)
        if valid:
            for (i, _, limit), out in zip(valid, self.pre([a for _, a, _ in valid])):
                one = lambda v, dt: np.array([[v]], dtype=dt)  # noqa: E731
                responses[i] = pb_utils.InferenceResponse([
                    pb_utils.Tensor(C.MEL.name, out.mel[None]),
                    pb_utils.Tensor(C.MEL_LENGTH.name, one(out.mel_length, np.int64)),
                    pb_utils.Tensor(C.INPUT_IDS.name, out.input_ids[None]),
                    pb_utils.Tensor(C.INPUT_LENGTHS.name, one(len(out.input_ids), np.int32)),
                    pb_utils.Tensor(C.REQUEST_OUTPUT_LEN.name, one(limit, np.int32)),
                    pb_utils.Tensor(C.END_ID.name, one(self.ids.eos, np.int32)),
                    pb_utils.Tensor(C.PAD_ID.name, one(self.ids.pad, np.int32)),
                ])
        return responses

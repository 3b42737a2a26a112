"""Triton model `canary_qwen_ask` (BLS): audio + instruction -> transcript + answer, in one call.

Built on the two modes: the audio goes to `canary_qwen` (or `canary_qwen_long` when it is longer
than the model's 40 s), then the instruction and the transcript go to `canary_qwen_llm` (the base
Qwen3) in NeMo's LLM-mode prompt format (contract.llm_mode_text).
"""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.long_form import LongFormOptions  # noqa: E402
from canary_triton.preprocess import decode_text, validate_audio  # noqa: E402
from canary_triton.serving import export_mel_params  # noqa: E402
from canary_triton.triton_adapter import (  # noqa: E402
    ThreadedModel, artifacts_dir, bls_error, input_array, model_parameters, unary_call,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        mel = export_mel_params(artifacts_dir(args, params))
        self.short_limit = int(C.MAX_AUDIO_SECONDS * mel.sample_rate)
        # checked here as well: error codes do not survive a BLS hop in Triton 2.51
        self.limits = LongFormOptions(max_seconds=float(params["max_seconds"])).limits(mel)
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            audio = pb_utils.get_input_tensor_by_name(request, C.AUDIO.name)
            validate_audio(input_array(pb_utils, request, C.AUDIO.name), self.limits)
            instruction = decode_text(input_array(pb_utils, request, C.TEXT_INPUT.name).reshape(-1)[0],
                                      role="the instruction")
            asr = C.LONG_FORM_MODEL if audio.as_numpy().size > self.short_limit else C.ENSEMBLE_MODEL
            text = unary_call(pb_utils, asr, [audio], [C.TRANSCRIPT.name])[C.TRANSCRIPT.name]
            transcript = text.as_numpy().reshape(-1)[0].decode("utf-8")
            prompt = C.llm_mode_text(instruction, transcript).encode("utf-8")
            llm_inputs = [pb_utils.Tensor(C.TEXT_INPUT.name, np.array([[prompt]], dtype=np.object_))]
            for spec in (C.MAX_NEW_TOKENS, C.TEMPERATURE, C.TOP_P, C.SEED):
                t = pb_utils.get_input_tensor_by_name(request, spec.name)
                if t is not None:  # [1] when declared with reshape: [] -> [1, 1] as the called model takes it
                    llm_inputs.append(pb_utils.Tensor(spec.name, t.as_numpy().reshape(1, 1)))
            answer = unary_call(pb_utils, C.LLM_MODE_MODEL, llm_inputs, [C.TEXT_OUTPUT.name])[C.TEXT_OUTPUT.name]
            sender.send(pb_utils.InferenceResponse([text, pb_utils.Tensor(C.TEXT_OUTPUT.name, answer.as_numpy())]),
                        flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)

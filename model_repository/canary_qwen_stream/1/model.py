"""Triton model `canary_qwen_stream` (decoupled, BLS): audio in -> partial transcripts as tokens come.

An ensemble may not route tensors around a decoupled step, and partial texts must be cut from the
whole token sequence (NeMo's decoding rule), so streaming is orchestrated here: preprocessor ->
encoder -> projector -> `llm` with streaming on; every few tokens the new stable text is sent, and
the pieces concatenate exactly to the unary ensemble's transcript. Same models, no second copy.
With the VAD gate on (export --vad-gate), a clip the preprocessor found no speech in gets "" at
once, without the LLM.
"""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.serving import load_serving_tokenizer  # noqa: E402
from canary_triton.streaming import TranscriptStream  # noqa: E402
from canary_triton.triton_adapter import (  # noqa: E402
    ThreadedModel, artifacts_dir, bls_error, forward_tokens, model_parameters, unary_call,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
PRE_OUT = [C.MEL.name, C.MEL_LENGTH.name, C.INPUT_IDS.name, C.INPUT_LENGTHS.name, C.REQUEST_OUTPUT_LEN.name,
           C.END_ID.name, C.PAD_ID.name]


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        self.tokenizer = load_serving_tokenizer(artifacts_dir(args, params))
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            inputs = [t for t in request.inputs() if t.name() in (C.AUDIO.name, C.MAX_NEW_TOKENS.name)]
            pre = unary_call(pb_utils, C.PREPROCESSOR_MODEL, inputs, PRE_OUT)
            if int(pre[C.REQUEST_OUTPUT_LEN.name].as_numpy().reshape(-1)[0]) == C.NO_SPEECH_OUTPUT_LEN:
                sender.send(_text(""), flags=FINAL)  # the VAD gate found no speech: no LLM call
                return
            enc = unary_call(pb_utils, C.ENCODER_MODEL, [pre[C.MEL.name], pre[C.MEL_LENGTH.name]], [C.ENCODED.name])
            proj = unary_call(pb_utils, C.PROJECTOR_MODEL, [enc[C.ENCODED.name]], [C.PROMPT_EMBEDDING_TABLE.name])
            llm_inputs = [pre[n] for n in PRE_OUT[2:]] + [proj[C.PROMPT_EMBEDDING_TABLE.name]]
            stream = TranscriptStream(self.tokenizer.decode)
            for tokens in forward_tokens(pb_utils, C.LLM_MODEL, llm_inputs, streaming=True, caller=sender,
                                         watcher=self.watcher):
                delta = stream.push(tokens)
                if delta:
                    sender.send(_text(delta))
            sender.send(_text(stream.finish()), flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)


def _text(text):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor(C.TRANSCRIPT.name, np.array([[text.encode("utf-8")]], dtype=np.object_)),
    ])

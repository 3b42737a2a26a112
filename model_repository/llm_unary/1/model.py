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
from canary_triton.serving import check_llm_tensors, llm_max_output_len, read_manifest  # noqa: E402
from canary_triton.triton_adapter import (  # noqa: E402
    ThreadedModel, artifacts_dir, bls_error, forward_tokens, input_array, model_parameters,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        self.target = params.get("llm_model", C.LLM_MODEL)
        manifest = read_manifest(artifacts_dir(args, params))
        self.vocab_rows = int(manifest["model"]["vocab_rows"])
        self.hidden = int(manifest["model"]["llm_hidden"])
        self.max_table_rows = int(manifest["limits"]["max_table_rows"])
        self.max_output_len = llm_max_output_len(manifest)
        self.vad_gate = params.get("vad_gate") == "true"
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            if self.vad_gate and _no_speech(request):  # the preprocessor's gate: answer "" without the LLM
                sender.send(_tokens([]), flags=FINAL)
                return
            # Checked here too: an error code does not survive the decoupled BLS hop (Triton 2.51
            # turns it into INTERNAL), and a direct caller's mistake must come back as INVALID_ARG.
            table = pb_utils.get_input_tensor_by_name(request, C.PROMPT_EMBEDDING_TABLE.name)
            check_llm_tensors(input_array(pb_utils, request, C.INPUT_IDS.name),
                              input_array(pb_utils, request, C.INPUT_LENGTHS.name, optional=True),
                              input_array(pb_utils, request, C.REQUEST_OUTPUT_LEN.name),
                              None if table is None else tuple(table.shape()),
                              self.vocab_rows, self.hidden, self.max_table_rows, self.max_output_len)
            # streaming and stop are the forwarder's to set (the stop travels with its own request id)
            inputs = [t for t in request.inputs() if t.name() not in (C.STREAMING.name, C.STOP.name)]
            tokens = []
            for piece in forward_tokens(pb_utils, self.target, inputs, caller=request, watcher=self.watcher):
                tokens.extend(piece)
            sender.send(_tokens(tokens), flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)


def _no_speech(request):
    limit = input_array(pb_utils, request, C.REQUEST_OUTPUT_LEN.name)
    return int(np.asarray(limit).reshape(-1)[0]) == C.NO_SPEECH_OUTPUT_LEN


def _tokens(tokens):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor(C.OUTPUT_IDS.name, np.asarray(tokens, dtype=np.int32).reshape(1, 1, len(tokens))),
        pb_utils.Tensor(C.SEQUENCE_LENGTH.name, np.array([[len(tokens)]], dtype=np.int32)),
    ])

"""Triton model `llm_unary`: the unary (non-decoupled) face of the decoupled `llm` for the ensemble.

Triton refuses plain HTTP/gRPC requests to an ensemble holding a decoupled step, and streaming
needs `llm` decoupled (as TensorRT-LLM's `decoupled_mode`). This adapter forwards the request to
`llm` through BLS on a worker thread, gathers its responses and answers once: `execute` returns at
once, so requests keep flowing into the in-flight batch.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.cpu_llm.request import check_llm_tensors
from canary_triton.model_params import LlmUnaryParams
from canary_triton.triton_models.adapter import artifacts_dir, callee_watch, forward_tokens, read_params, scalar_array
from canary_triton.triton_models.base import ThreadedModel


class LlmUnaryModel(ThreadedModel):
    def initialize(self, args):
        params = read_params(args, LlmUnaryParams)
        self.target = params.llm_model
        manifest = ExportManifest.read(artifacts_dir(args, params))
        self.vocab_rows = manifest.model.vocab_rows
        self.hidden = manifest.model.llm_hidden
        self.max_table_rows = manifest.limits.max_table_rows
        self.max_output_len = manifest.limits.llm_max_output_len
        self.vad_gate = params.vad_gate
        self.callee = callee_watch(args, self.target)  # its stub's death ends the calls it had taken
        self.start_workers(params)

    def serve(self, request, sender):
        if self.vad_gate and self._no_speech(request):  # the preprocessor's gate: answer "" without the LLM
            self.send(sender, self._tokens([]))
            return
        # Checked here too: an error code does not survive the decoupled BLS hop (Triton 2.51
        # turns it into INTERNAL), and a direct caller's mistake must come back as INVALID_ARG.
        table = self.pb.get_input_tensor_by_name(request, C.PROMPT_EMBEDDING_TABLE.name)
        check_llm_tensors(
            self.input(request, C.INPUT_IDS.name),
            self.input(request, C.INPUT_LENGTHS.name, optional=True),
            self.input(request, C.REQUEST_OUTPUT_LEN.name),
            None if table is None else tuple(table.shape()),
            self.vocab_rows,
            self.hidden,
            self.max_table_rows,
            self.max_output_len,
        )
        # stop is the forwarder's to send (with its own request id), as streaming is its to set
        inputs = [t for t in request.inputs() if t.name() != C.STOP.name]
        tokens = []
        pieces = forward_tokens(self.pb, self.target, inputs, caller=request, callee=self.callee)
        with closing(pieces):  # the forwarded request ends before any FINAL response (an error too)
            for piece in pieces:
                tokens.extend(piece)
        self.send(sender, self._tokens(tokens))

    def _no_speech(self, request):
        limit = self.input(request, C.REQUEST_OUTPUT_LEN.name)
        return int(np.asarray(limit).reshape(-1)[0]) == C.NO_SPEECH_OUTPUT_LEN

    def _tokens(self, tokens):
        return [
            self.pb.Tensor(C.OUTPUT_IDS.name, np.asarray(tokens, dtype=np.int32).reshape(1, 1, len(tokens))),
            self.pb.Tensor(C.SEQUENCE_LENGTH.name, scalar_array(len(tokens))),
        ]

"""Triton model `canary_qwen_llm`: LLM mode, text in -> text out with the base Qwen3 (LoRA off),
NeMo's `qwen` prompt format, greedy by default (temperature/top_p/seed optional). Forwards to the
decoupled `llm_base` through BLS on a worker thread and answers once (unary HTTP and gRPC), with
`finish_reason`: `length` when `max_new_tokens` cut the answer, else `stop`."""

from __future__ import annotations

from contextlib import closing

import numpy as np

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.cpu_llm.request import finish_reason_of, parse_sampling
from canary_triton.frontend.preprocess import llm_mode_prompt, validate_max_new_tokens
from canary_triton.model_params import LlmModeParams
from canary_triton.runtime.loaders import load_serving_tokenizer
from canary_triton.triton_models.adapter import artifacts_dir, callee_watch, forward_tokens, read_params, scalar_array
from canary_triton.triton_models.base import ThreadedModel


class LlmModeModel(ThreadedModel):
    def initialize(self, args):
        params = read_params(args, LlmModeParams)
        export = artifacts_dir(args, params)
        self.tokenizer = load_serving_tokenizer(export)
        self.max_new_tokens = ExportManifest.read(export).limits.llm_max_output_len  # LLM mode: the engine's limit
        self.target = params.llm_model
        self.callee = callee_watch(args, self.target)  # its stub's death ends the calls it had taken
        self.start_workers(params)

    def serve(self, request, sender):
        pb = self.pb
        raw = self.input(request, C.TEXT_INPUT.name).reshape(-1)[0]
        ids = llm_mode_prompt(self.tokenizer, raw)
        limit = validate_max_new_tokens(
            self.input(request, C.MAX_NEW_TOKENS.name, optional=True), limit=self.max_new_tokens
        )
        temperature = self.input(request, C.TEMPERATURE.name, optional=True)
        top_p = self.input(request, C.TOP_P.name, optional=True)
        seed = self.input(request, C.SEED.name, optional=True)
        parse_sampling(temperature, top_p, seed, names=("temperature", "top_p", "seed"))  # names the entry's inputs
        inputs = [
            pb.Tensor(C.INPUT_IDS.name, np.asarray([ids], dtype=np.int32)),
            pb.Tensor(C.INPUT_LENGTHS.name, scalar_array(len(ids))),
            pb.Tensor(C.REQUEST_OUTPUT_LEN.name, scalar_array(limit)),
            pb.Tensor(C.END_ID.name, scalar_array(self.tokenizer.ids.eos)),
        ]
        for name, value, dtype in (
            (C.TEMPERATURE.name, temperature, np.float32),
            (C.RUNTIME_TOP_P.name, top_p, np.float32),
            (C.SEED.name, seed, np.uint64),
        ):
            if value is not None:
                inputs.append(pb.Tensor(name, np.asarray(value, dtype=dtype).reshape(1, 1)))
        pieces = forward_tokens(pb, self.target, inputs, caller=request, callee=self.callee)
        with closing(pieces):  # the forwarded request ends before any FINAL response (an error too)
            tokens = [t for piece in pieces for t in piece]
        reason = finish_reason_of(tokens, limit, self.tokenizer.ids.eos)
        self.send(
            sender,
            [
                self.string_tensor(C.TEXT_OUTPUT.name, self.tokenizer.decode(tokens)),
                self.string_tensor(C.FINISH_REASON.name, reason.value),
            ],
        )

"""Triton model `canary_qwen_llm`: LLM mode, text in -> text out with the base Qwen3 (LoRA off),
NeMo's `qwen` prompt format, greedy by default (temperature/top_p/seed optional). Forwards to the
decoupled `llm_base` through BLS on a worker thread and answers once (unary HTTP and gRPC)."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.preprocess import llm_mode_prompt, validate_max_new_tokens  # noqa: E402
from canary_triton.serving import llm_max_output_len, load_serving_tokenizer, parse_sampling, read_manifest  # noqa: E402
from canary_triton.triton_adapter import (  # noqa: E402
    ThreadedModel, artifacts_dir, bls_error, forward_tokens, input_array, model_parameters,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        export = artifacts_dir(args, params)
        self.tokenizer = load_serving_tokenizer(export)
        self.max_new_tokens = llm_max_output_len(read_manifest(export))  # LLM mode: the engine's limit
        self.target = params.get("llm_model", C.LLM_BASE_MODEL)
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            raw = input_array(pb_utils, request, C.TEXT_INPUT.name).reshape(-1)[0]
            ids = llm_mode_prompt(self.tokenizer, raw)
            limit = validate_max_new_tokens(input_array(pb_utils, request, C.MAX_NEW_TOKENS.name, optional=True),
                                            limit=self.max_new_tokens)
            temperature = input_array(pb_utils, request, C.TEMPERATURE.name, optional=True)
            top_p = input_array(pb_utils, request, C.TOP_P.name, optional=True)
            seed = input_array(pb_utils, request, C.SEED.name, optional=True)
            parse_sampling(temperature, top_p, seed, names=("temperature", "top_p", "seed"))  # names the entry's inputs
            one = lambda v, dt: np.array([[v]], dtype=dt)  # noqa: E731
            inputs = [
                pb_utils.Tensor(C.INPUT_IDS.name, np.asarray([ids], dtype=np.int32)),
                pb_utils.Tensor(C.INPUT_LENGTHS.name, one(len(ids), np.int32)),
                pb_utils.Tensor(C.REQUEST_OUTPUT_LEN.name, one(limit, np.int32)),
                pb_utils.Tensor(C.END_ID.name, one(self.tokenizer.ids.eos, np.int32)),
            ]
            for name, value, dtype in ((C.TEMPERATURE.name, temperature, np.float32),
                                       (C.RUNTIME_TOP_P.name, top_p, np.float32), (C.SEED.name, seed, np.uint64)):
                if value is not None:
                    inputs.append(pb_utils.Tensor(name, np.asarray(value, dtype=dtype).reshape(1, 1)))
            pieces = forward_tokens(pb_utils, self.target, inputs, caller=request, watcher=self.watcher)
            tokens = [t for piece in pieces for t in piece]
            text = self.tokenizer.decode(tokens)
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor(C.TEXT_OUTPUT.name, np.array([[text.encode("utf-8")]], dtype=np.object_)),
            ]), flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)

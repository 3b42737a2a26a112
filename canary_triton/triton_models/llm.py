"""Triton model `llm` (CPU profile): the TensorRT-LLM backend's tensors, served by PyTorch with
in-flight batching (decoupled). The engine thread only computes: each request's responses leave
through its own :class:`~canary_triton.cpu_llm.responses.ResponseChannel` as tokens come."""

from __future__ import annotations

import numpy as np
import torch

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.cpu_llm.batcher import (
    STEP_KINDS,
    CancelRegistry,
    ContinuousBatcher,
    GenerationRequest,
    splice_prompt_table,
)
from canary_triton.cpu_llm.request import is_stop_request, parse_llm_request
from canary_triton.cpu_llm.responses import ChannelOptions, ResponseChannel
from canary_triton.cpu_llm.scheduler import OUTCOMES
from canary_triton.errors import InputError
from canary_triton.model_params import LlmParams
from canary_triton.runtime.cpu_profile import instruction_set, resolve_threads
from canary_triton.runtime.loaders import load_llm, load_lora
from canary_triton.triton_models.adapter import artifacts_dir, read_params, scalar_array
from canary_triton.triton_models.base import PythonModel

#: The ``outcome`` label of a request refused before it reached the engine (not a finish reason).
REJECTED = "rejected"


class LlmModel(PythonModel):
    def initialize(self, args):
        params = read_params(args, LlmParams)
        threads = resolve_threads(params.threads, "llm")
        nice = params.nice
        torch.set_num_threads(threads)
        export = artifacts_dir(args, params)
        weights = params.weights
        # Weights stay mapped from their file (transformers keeps safetensors memory-mapped when the
        # dtype matches), so llm and llm_base on the same file hold one copy in memory between them.
        self.model = load_llm(export, weights)
        lora = load_lora(export) if params.asr_adapter else None
        manifest = ExportManifest.read(export)
        adapter = f" + run-time ASR adapter ({lora.describe()})" if lora is not None else ""
        self.pb.Logger.log_info(
            f"{args['model_name']}: {weights}{adapter}, LLM in {str(self.model.dtype).replace('torch.', '')} "
            f"({manifest.precision.reason}), {threads} thread(s)"
            f"{f' at nice +{nice} (below the encoder)' if nice else ' at the encoder priority'}; "
            f"this CPU: {instruction_set()}, torch {torch.backends.cpu.get_cpu_capability()}"
        )
        self.embedding = self.model.get_input_embeddings()
        self.max_table_rows = manifest.limits.max_table_rows
        self.max_output_len = manifest.limits.llm_max_output_len
        self.exclude_input = params.exclude_input_in_output
        # Room for the longest prompt plus the most tokens a request may ask for (TensorRT-LLM: max_seq_len).
        self.batcher = ContinuousBatcher(
            self.model,
            max_batch=params.max_batch,
            threads=threads,
            max_positions=C.MAX_TEXT_PROMPT_TOKENS + self.max_output_len,
            lora=lora,
            nice=nice,
        )
        self.cancels = CancelRegistry()
        self.name = args["model_name"]
        self.channel_options = {
            streaming: ChannelOptions(
                streaming=streaming,
                check_period_s=params.cancellation_check_period_ms / 1000,
                send_timeout_s=params.send_timeout_s,
            )
            for streaming in (False, True)
        }
        self.metrics = _Metrics(self.pb, args["model_name"], self.batcher)
        self.batcher.on_step = self.metrics.stepped
        self.batcher.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            key = request.request_id() or None
            if is_stop_request(self.input(request, C.STOP.name, optional=True)):
                # TensorRT-LLM's stop request: cancel the request in flight with the same id.
                if key:
                    self.cancels.cancel(key)
                    self.send(sender)
                else:
                    self.send_error(sender, InputError("input 'stop' needs the request id of the request to stop"))
                continue
            try:
                req = parse_llm_request(
                    self.input(request, C.INPUT_IDS.name),
                    self.input(request, C.INPUT_LENGTHS.name, optional=True),
                    self.input(request, C.REQUEST_OUTPUT_LEN.name),
                    self.input(request, C.END_ID.name, optional=True),
                    self.input(request, C.PROMPT_EMBEDDING_TABLE.name, optional=True),
                    self.input(request, C.STREAMING.name, optional=True),
                    vocab_rows=self.embedding.num_embeddings,
                    hidden=self.embedding.embedding_dim,
                    max_table_rows=self.max_table_rows,
                    temperature=self.input(request, C.TEMPERATURE.name, optional=True),
                    top_p=self.input(request, C.RUNTIME_TOP_P.name, optional=True),
                    seed=self.input(request, C.SEED.name, optional=True),
                    max_output_len=self.max_output_len,
                )
                with torch.no_grad():
                    embeds = splice_prompt_table(self.embedding, req.input_ids, req.table)
                self.cancels.register(key)  # a stop request with this id cancels it while in flight
                channel = self._channel(request, sender, req.streaming, req.input_ids)
                stopped = self.cancels.is_cancelled
                try:
                    self.batcher.submit(
                        GenerationRequest(
                            embeds=embeds,
                            max_new_tokens=req.max_new_tokens,
                            end_id=req.end_id,
                            on_tokens=channel.push,
                            is_cancelled=lambda k=key, c=channel: c.cancelled() or stopped(k),
                            sampling=req.sampling,
                            on_finish=lambda outcome, n, k=key, c=channel: self._finished(k, c, outcome, n),
                            on_admit=self.metrics.admitted,
                            on_error=channel.fail,
                        )
                    )
                except Exception:
                    self.cancels.release(key)
                    raise
                channel.start()
            except Exception as e:  # noqa: BLE001
                self.metrics.finished(REJECTED, 0)
                self.send_error(sender, e)
        return None  # the engine thread sets the busy-slot gauge as requests take and leave rows

    def _channel(self, request, sender, streaming: bool, input_ids) -> ResponseChannel:
        """The request's responses, delivered from a thread of its own (the engine never sends)."""
        prompt = None if self.exclude_input else input_ids.tolist()

        def deliver(tokens: list[int], final: bool) -> None:
            if streaming:
                self.send(sender, _outputs(self.pb, tokens) if tokens else None, final=final)
            else:
                self.send(sender, _outputs(self.pb, (prompt or []) + tokens))

        return ResponseChannel(
            self.channel_options[streaming],
            deliver,
            lambda e: self.send_error(sender, e),
            request.is_cancelled,
            name=f"{self.name}-response",
            warn=lambda line: self.pb.Logger.log_warn(f"{self.name}: {line}"),
        )

    def _finished(self, key, channel: ResponseChannel, outcome: C.FinishReason, tokens: int) -> None:
        self.cancels.release(key)
        if channel.abandoned():
            self.pb.Logger.log_warn(
                f"{self.name}: a response send did not complete within "
                f"{channel.options.send_timeout_s:g} s; its request was cancelled and its row freed"
            )
        self.metrics.finished(outcome, tokens)

    def finalize(self):
        # every request still held ends with an error saying why (aborted: never as an answer)
        self.batcher.stop()


class _Metrics:
    """Custom Prometheus metrics on Triton's endpoint: requests by outcome (the finish reasons, and
    ``rejected``), tokens, busy slots."""

    def __init__(self, pb_utils, model_name, batcher):
        self.batcher = batcher

        def family(name, kind, description):
            return pb_utils.MetricFamily(name=name, kind=getattr(pb_utils.MetricFamily, kind), description=description)

        self.requests = family(
            "canary_llm_requests_total",
            "COUNTER",
            "Requests that left the LLM engine, by outcome: its finish reason (stop: end id, length: output "
            "limit, cancelled, aborted: the engine stopped, error) or rejected (refused before it)",
        )
        self.tokens = family("canary_llm_generated_tokens_total", "COUNTER", "Tokens generated by the LLM engine")
        self.slots = family("canary_llm_active_requests", "GAUGE", "Requests holding an in-flight batch slot")
        self.steps = family(
            "canary_llm_steps_total",
            "COUNTER",
            "Forward passes of the in-flight batch, by kind "
            "(prefill: requests admitted together; decode: one token per running row)",
        )
        self.rows = family(
            "canary_llm_step_rows_total",
            "COUNTER",
            "Rows (requests) in those passes, by kind: rows / steps is the mean batch of a pass",
        )
        self.positions = family(
            "canary_llm_prefill_positions_total",
            "COUNTER",
            "Prompt positions (text tokens and audio embeddings) prefilled",
        )
        self.step_count = {k: self.steps.Metric(labels={"model": model_name, "kind": k}) for k in STEP_KINDS}
        self.row_count = {k: self.rows.Metric(labels={"model": model_name, "kind": k}) for k in STEP_KINDS}
        self.position_count = self.positions.Metric(labels={"model": model_name})
        self.by_outcome = {
            o: self.requests.Metric(labels={"model": model_name, "outcome": o})
            for o in (*(r.value for r in OUTCOMES), REJECTED)
        }
        self.token_count = self.tokens.Metric(labels={"model": model_name})
        self.slot_gauge = self.slots.Metric(labels={"model": model_name})

    def finished(self, outcome: C.FinishReason | str, n_tokens: int) -> None:
        self.by_outcome[str(outcome)].increment(1)
        if n_tokens:
            self.token_count.increment(n_tokens)
        self.slot_gauge.set(self.batcher.active)

    def stepped(self, kind, rows, positions):
        self.step_count[kind].increment(1)
        self.row_count[kind].increment(rows)
        if kind == "prefill":
            self.position_count.increment(positions)

    def admitted(self):
        self.slot_gauge.set(self.batcher.active)


def _outputs(pb_utils, tokens):
    return [
        pb_utils.Tensor(C.OUTPUT_IDS.name, np.array([[tokens]], dtype=np.int32).reshape(1, 1, len(tokens))),
        pb_utils.Tensor(C.SEQUENCE_LENGTH.name, scalar_array(len(tokens))),
    ]

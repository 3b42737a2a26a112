"""In-flight (continuous) batching of Qwen3 on CPU with PyTorch: the CPU twin of TensorRT-LLM.

Requests join the running batch at token boundaries and leave it as soon as they emit the end id
or reach their token limit, so a short request is never held behind a long one. Two parts, as
vLLM separates its Scheduler from its ModelRunner:

- :class:`canary_triton.cpu_llm.scheduler.Scheduler` (plain data, no torch): which requests hold
  which rows, admission at token boundaries, finish by end id / token limit / cancellation,
  capacity limits;
- :class:`canary_triton.cpu_llm.runner.ModelRunner` (tensors): a KV cache held per row (no copy per
  admission), batched prefill of the requests admitted together (from their embeddings: text ids
  plus prompt-table rows for the audio), one decode step for all running rows at their own positions.

This module is the loop between them and the callbacks to the requests. Greedy decoding, as
NeMo's ``SALM.generate`` (the end id is not emitted, as TensorRT-LLM's executor does not emit it).

Why a hand-written loop: transformers' continuous-batching manager takes token ids only, while
audio enters as embeddings; this loop takes ``inputs_embeds`` natively (the served throughput it
gives is measured in ``benchmarks/README.md``).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from canary_triton import contract as C
from canary_triton.contract import FinishReason
from canary_triton.cpu_llm.runner import LoraWeights, ModelRunner
from canary_triton.cpu_llm.scheduler import OUTCOMES, Scheduler
from canary_triton.errors import ServerBusyError
from canary_triton.runtime.cpu_profile import check_nice, lower_thread_priority

log = logging.getLogger(__name__)

#: Positions one row of the engine holds: the longest prompt (an LLM-mode text prompt; an ASR
#: prompt with 40 s of audio is shorter) plus the longest output.
MAX_POSITIONS = C.MAX_TEXT_PROMPT_TOKENS + C.MAX_NEW_TOKENS_LIMIT

#: The kinds of forward pass the engine reports to ``on_step``.
STEP_KINDS = ("prefill", "decode")

#: Called with (new token ids, finished). The engine calls it from its own thread.
TokenCallback = Callable[[list[int], bool], None]


@dataclass
class GenerationRequest:
    embeds: torch.Tensor  # [L, hidden] prompt embeddings (audio rows already in place)
    max_new_tokens: int
    end_id: int
    on_tokens: TokenCallback
    is_cancelled: Callable[[], bool] = lambda: False
    on_error: Callable[[Exception], None] | None = None
    sampling: "Sampling | None" = None  # None: greedy (NeMo's default)
    #: Called once when the request leaves the engine: why (``contract.FinishReason``) and the
    #: number of tokens generated (statistics, metrics).
    on_finish: Callable[[FinishReason, int], None] | None = None
    on_admit: Callable[[], None] | None = None  # called when the request takes a batch slot
    #: ASR mode: the run-time LoRA applies (an engine on base weights with LoraWeights); LLM
    #: mode (False): the base model. An engine on merged weights has no run-time adapter.
    adapter: bool = True
    # engine state
    generated: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    row: int | None = None  # the batch row it holds (the scheduler's), None while waiting

    @property
    def prompt_len(self) -> int:
        return int(self.embeds.shape[0])


@dataclass(frozen=True)
class Sampling:
    """Temperature / nucleus sampling for one request (TensorRT-LLM's ``temperature``,
    ``runtime_top_p``, ``seed``); a seeded request is reproducible whatever it is batched with."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


def choose_token(logits: torch.Tensor, sampling: Sampling | None, gen: torch.Generator | None) -> int:
    """Greedy argmax, or a draw from the temperature-scaled, top-p-truncated distribution."""
    if sampling is None or sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < sampling.top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def splice_prompt_table(embedding: torch.nn.Embedding, ids: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor:
    """Embeddings for ``ids`` where ids >= vocab rows address rows of ``table`` (TRT-LLM's convention)."""
    vocab = embedding.num_embeddings
    fake = ids >= vocab
    if bool(fake.any()):
        if table is None:
            raise ValueError(f"input ids reach {int(ids.max())} >= vocab size {vocab} but no prompt table was given")
        rows = ids[fake] - vocab
        if int(rows.max()) >= table.shape[0]:
            raise ValueError(
                f"input id {int(ids.max())} addresses prompt-table row {int(rows.max())}, "
                f"but the table has {table.shape[0]} rows"
            )
    out = embedding(ids.clamp(max=vocab - 1))
    if bool(fake.any()):
        out[fake] = table[ids[fake] - vocab].to(out.dtype)
    return out


class ContinuousBatcher:
    """A background thread that runs every submitted request to completion, in-flight batched.

    The loop: take new submissions (block only when idle), let the scheduler admit waiting
    requests into free rows, prefill those together, decode one token for every running row,
    hand each token to its request, free the rows of finished requests.
    """

    def __init__(
        self,
        model,
        max_batch: int = 16,
        threads: int | None = None,
        max_positions: int = MAX_POSITIONS,
        lora: "LoraWeights | None" = None,
        nice: int = 0,
        on_step: "Callable[[str, int, int], None] | None" = None,
    ):
        self.model = model.eval()
        self.max_batch = max_batch
        self.threads = threads
        self.nice = check_nice(nice)  # the engine thread's (and its OpenMP pool's) priority below the caller's
        self.running_nice: int | None = None  # the nice value the engine thread runs at (once started)
        # Called from the engine thread after each batched prefill ("prefill", rows, positions) and
        # decode step ("decode", rows, rows): the in-flight batch's efficiency, for metrics.
        self.on_step = on_step
        self.runner = ModelRunner(self.model, max_batch, max_positions, lora=lora)
        self.scheduler = Scheduler(max_batch, self.runner.max_positions)
        self._queue: "queue.Queue[GenerationRequest | None]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._submit_lock = threading.Lock()  # no submission lands behind the stop marker
        self.steps = 0  # decode steps run (statistics)
        self.prefills = 0  # batched prefills run
        self.max_rows_seen = 0
        self.active = 0  # requests holding a batch row now
        self.outcomes = {o.value: 0 for o in OUTCOMES}  # requests by finish reason
        self.tokens_generated = 0

    # -- public ---------------------------------------------------------------------------------
    def start(self) -> "ContinuousBatcher":
        self._thread = threading.Thread(target=self._run, name="llm-continuous-batcher", daemon=True)
        self._thread.start()
        return self

    def submit(self, req: GenerationRequest) -> None:
        """Queue a request; raises :class:`EngineStopped` once :meth:`stop` was called (the
        request was not taken: the caller answers it)."""
        with self._submit_lock:
            if self._stopping.is_set():
                raise EngineStopped("the LLM engine is stopping (model unloading or server shutting down)")
            self._queue.put(req)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the engine: every request it holds, running or queued, ends ``aborted`` with an
        :class:`EngineStopped` error (never as an answer). True once the engine thread has ended
        (within ``timeout``; a step in progress finishes first)."""
        with self._submit_lock:
            self._stopping.set()
            self._queue.put(None)  # behind every submission: they are all taken, then aborted
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        self._abort_all()  # never started: answer what was submitted
        return True

    # -- engine ---------------------------------------------------------------------------------
    def _run(self) -> None:
        # Before the first torch op of this thread: its OpenMP workers, started by that op, inherit it.
        self.running_nice = lower_thread_priority(self.nice)
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            try:
                if not self._step():
                    return
            except Exception as e:  # noqa: BLE001  a dead engine thread would leave every request unanswered
                log.exception("engine step failed: failing the requests in flight and going on")
                for req in self.scheduler.release_all():
                    self._done(req, FinishReason.ERROR, [], error=e)
                self.active = 0

    def _step(self) -> bool:
        """Take submissions, admit, prefill and decode once; False once told to stop."""
        sched = self.scheduler
        if sched.idle:  # nothing holds a row: a cache grown by a long request gives its memory back
            self.runner.cache.shrink()
        if not self._take_submissions(block=sched.idle):
            self._abort_all()
            return False
        admission = sched.admit()
        for req in admission.dropped:  # cancelled while queued: no prefill, no row
            self._done(req, FinishReason.CANCELLED, [])
        if admission.admitted:
            self._prefill(admission.admitted)
        if sched.running:
            self._decode()
        return True

    def _abort_all(self) -> None:
        """End every request held (running, waiting, still submitted) with EngineStopped."""
        held = self.scheduler.release_all()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                held.append(item)
        self.active = 0
        for req in held:
            error = EngineStopped(
                f"the LLM engine stopped (model unloading or server shutting down) after "
                f"{len(req.generated)} of at most {req.max_new_tokens} tokens; the request was not finished"
            )
            self._done(req, FinishReason.ABORTED, [], error=error)

    def _take_submissions(self, block: bool) -> bool:
        """Move submitted requests to the scheduler; False once the engine is told to stop."""
        while True:
            try:
                item = self._queue.get(block=block)
            except queue.Empty:
                return True
            if item is None:
                return False
            block = False
            try:
                _check_embeds(item, self.runner.shape.hidden)
                self.scheduler.add(item)
            except ValueError as e:  # a request that can never run fails alone
                self._done(item, FinishReason.ERROR, [], error=e)

    def _prefill(self, admitted: list[GenerationRequest]) -> None:
        try:
            logits = list(
                self.runner.prefill(admitted[0].row, [r.embeds for r in admitted], [r.adapter for r in admitted])
            )
        except Exception as e:  # a bad request must not stop the engine, nor fail its batch mates
            if len(admitted) == 1:
                log.exception("prefill failed")
                self._release(admitted[0])
                self._done(admitted[0], FinishReason.ERROR, [], error=e)
                return
            ok, logits = [], []
            for req in admitted:  # one by one, each into the row it holds now
                try:
                    logits.append(self.runner.prefill(req.row, [req.embeds], [req.adapter])[0])
                    ok.append(req)
                except Exception as e1:
                    log.exception("prefill failed")
                    self._release(req)
                    self._done(req, FinishReason.ERROR, [], error=e1)
            admitted = ok
        self.prefills += 1
        self._stepped("prefill", len(admitted), sum(int(r.embeds.shape[0]) for r in admitted))
        self.active = len(self.scheduler.running)
        self.max_rows_seen = max(self.max_rows_seen, self.active)
        for req in admitted:
            req.generator = req.sampling.generator() if req.sampling is not None else None
            if req.on_admit is not None:
                try:
                    req.on_admit()
                except Exception:  # metrics must never stop the engine
                    log.exception("admit callback failed")
        self._tokens(admitted, [choose_token(lg, r.sampling, r.generator) for lg, r in zip(logits, admitted)])

    def _decode(self) -> None:
        running = list(self.scheduler.running)
        tokens = torch.tensor([r.generated[-1] for r in running], dtype=torch.long)
        positions = torch.tensor([Scheduler.positions(r) for r in running], dtype=torch.long)
        try:
            logits = self.runner.decode(tokens, positions, [r.adapter for r in running])
        except Exception as e:
            log.exception("decode step failed")
            for req in reversed(running):
                self._release(req)
                self._done(req, FinishReason.ERROR, [], error=e)
            return
        self.steps += 1
        self._stepped("decode", len(running), len(running))
        self.max_rows_seen = max(self.max_rows_seen, len(running))
        if all(r.sampling is None for r in running):
            chosen = logits.argmax(dim=-1).tolist()
        else:
            chosen = [choose_token(logits[i], r.sampling, r.generator) for i, r in enumerate(running)]
        self._tokens(running, chosen)

    def _tokens(self, reqs: list[GenerationRequest], tokens: list[int]) -> None:
        """Record one token per request; free finished rows, then tell each request."""
        results = [self.scheduler.on_token(req, tok) for req, tok in zip(reqs, tokens)]
        self.tokens_generated += sum(r.emit for r in results)
        for req, r in zip(reqs, results):
            if r.finished:
                self._release(req)
        for req, tok, r in zip(reqs, tokens, results):
            out = [tok] if r.emit else []
            if r.finished:
                self._done(req, r.finished, out)
            else:
                self._safe_callback(req, out, False)

    def _stepped(self, kind: str, rows: int, positions: int) -> None:
        if self.on_step is not None and rows:
            try:
                self.on_step(kind, rows, positions)
            except Exception:  # metrics must never stop the engine
                log.exception("step callback failed")

    def _release(self, req: GenerationRequest) -> None:
        move = self.scheduler.release(req)
        if move is not None:
            self.runner.move(move.src, move.dst, move.length)
        self.active = len(self.scheduler.running)

    def _done(
        self, req: GenerationRequest, outcome: FinishReason, tokens: list[int], error: Exception | None = None
    ) -> None:
        """The request's last callback (counted first, so a waiter sees the engine's counters).
        Aborted and error end with ``error``; stop, length and cancelled with the last tokens (a
        cancelled request's stream ends with the tokens so far, as TensorRT-LLM's stop request)."""
        self.outcomes[outcome.value] += 1
        self._safe_callback(req, tokens, True, error=error)
        if req.on_finish is not None:
            try:
                req.on_finish(outcome, len(req.generated))
            except Exception:  # metrics must never stop the engine
                log.exception("finish callback failed")

    @staticmethod
    def _safe_callback(req: GenerationRequest, tokens: list[int], done: bool, error: Exception | None = None) -> None:
        try:
            if error is not None and req.on_error is not None:
                req.on_error(error)
            else:
                req.on_tokens(tokens, done)
        except Exception:  # the sender may be gone (client cancelled); the engine goes on
            log.exception("token callback failed")


class EngineStopped(ServerBusyError):
    """The engine stopped before the request finished (a server-side condition, not the
    client's mistake: the client may retry on another instance)."""


def _check_embeds(req: GenerationRequest, hidden: int) -> None:
    e = req.embeds
    if e.dim() != 2 or e.shape[1] != hidden:
        raise ValueError(f"prompt embeddings must be [positions, {hidden}], got {list(e.shape)}")


class CancelRegistry:
    """Request ids in flight (submitted, not yet finished) and the ones a ``stop`` request (see
    C.STOP) cancelled. As in TensorRT-LLM's backend, a stop names a request in flight: one
    for an id that is not (finished, never sent) does nothing, so a client may reuse its ids. A
    forwarded request always reaches the model before its stop (the forwarder sends the stop
    later, and one model instance takes its queue in order)."""

    def __init__(self) -> None:
        self._live: dict[str, int] = {}  # id -> requests in flight with it
        self._stopped: set[str] = set()
        self._lock = threading.Lock()

    def register(self, key: str | None) -> None:
        if key:
            with self._lock:
                self._live[key] = self._live.get(key, 0) + 1

    def release(self, key: str | None) -> None:
        if key:
            with self._lock:
                left = self._live.get(key, 0) - 1
                if left > 0:
                    self._live[key] = left
                else:
                    self._live.pop(key, None)
                    self._stopped.discard(key)

    def cancel(self, key: str) -> bool:
        """Stop the requests in flight with this id; False (nothing done) when there is none."""
        with self._lock:
            if key not in self._live:
                return False
            self._stopped.add(key)
            return True

    def is_cancelled(self, key: str | None) -> bool:
        if key is None:
            return False
        with self._lock:
            return key in self._stopped

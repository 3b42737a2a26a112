"""Health that tells the truth: an end-to-end probe, and a watchdog that recovers a wedged server.

Triton's ``/v2/health/ready`` says whether every model is *loaded*; it stays 200 while a stub
blocked in an IPC answers nothing (Triton 2.51's python_backend). Readiness here means "can
answer now", shown by answering:

- :func:`probe` sends one tiny real request end to end through each path a client uses (the ASR
  ensemble with a short clip, LLM mode with one token) with a deadline. ``canary-triton probe``
  runs it (the Kubernetes readiness probe); an overloaded server's refusal (UNAVAILABLE, queue
  full) counts as alive, an answer that does not come within the deadline does not.
- :class:`Watchdog` (started by ``canary-triton serve``) probes every ``interval_s``. A server is
  *wedged* when ``failures`` probes in a row missed their deadline **and** nothing completed
  meanwhile (no entry point answered a request and the llm engines' step counters did not move):
  a busy server that answers others is not wedged. It then dumps every stub's Python stacks into the
  server log (the evidence), kills the repository's stubs (the stub supervisor reloads each model,
  so readiness is false while they load), and probes again. If the server is still wedged after
  ``max_recoveries`` recoveries in a row, the watchdog stops the server: ``serve`` exits non-zero
  and the orchestrator restarts it, rather than a READY server answering nothing.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable

import numpy as np

from canary_triton import contract as C
from canary_triton.bundled import DEMO_SAMPLE

#: The probe's clip: a bundled held-out utterance (speech, so a VAD gate passes it to the LLM).
PROBE_AUDIO = DEMO_SAMPLE
PROBE_MAX_NEW_TOKENS = 4


@dataclass(frozen=True)
class WatchdogOptions:
    """When the watchdog probes, what counts as wedged, and how it recovers."""

    interval_s: float = 10.0  # between probes
    deadline_s: float = 20.0  # each probe request's deadline, end to end
    failures: int = 2  # missed deadlines in a row, with no progress meanwhile, that mean wedged
    max_recoveries: int = 2  # recoveries in a row that may fail before the server is stopped

    def __post_init__(self) -> None:
        for name in ("interval_s", "deadline_s", "failures", "max_recoveries"):
            if not getattr(self, name) > 0:
                raise ValueError(f"watchdog {name} is {getattr(self, name)}; it must be > 0")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool  # every path answered (or refused for load) within the deadline
    seconds: float
    detail: str  # what failed, or what answered


def _probe_audio() -> np.ndarray:
    from canary_triton.frontend.audio import load_audio

    return load_audio(PROBE_AUDIO, C.MelParams.sample_rate).astype(np.float32)


def probe(grpc_url: str, deadline_s: float) -> ProbeResult:
    """One ASR request (``canary_qwen``) and one LLM-mode request (``canary_qwen_llm``), each with
    ``deadline_s``. UNAVAILABLE (a full queue) counts as alive; a missed deadline, an internal
    error or no connection does not."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    t0 = time.monotonic()
    audio = _probe_audio()[None, :]
    cap = np.array([[PROBE_MAX_NEW_TOKENS]], dtype=np.int32)
    requests = [
        (C.ENSEMBLE_MODEL, [(C.AUDIO.name, audio, "FP32")], C.TRANSCRIPT.name),
        (
            C.LLM_MODE_MODEL,
            [
                (C.TEXT_INPUT.name, np.array([["Say yes."]], dtype=np.object_), "BYTES"),
                (C.MAX_NEW_TOKENS.name, np.array([[1]], dtype=np.int32), "INT32"),
            ],
            C.TEXT_OUTPUT.name,
        ),
    ]
    answered = []
    try:
        with grpcclient.InferenceServerClient(grpc_url) as client:
            for model, tensors, output in requests:
                inputs = []
                for name, array, dtype in tensors:
                    t = grpcclient.InferInput(name, list(array.shape), dtype)
                    t.set_data_from_numpy(array)
                    inputs.append(t)
                if model == C.ENSEMBLE_MODEL:
                    t = grpcclient.InferInput(C.MAX_NEW_TOKENS.name, list(cap.shape), "INT32")
                    t.set_data_from_numpy(cap)
                    inputs.append(t)
                try:
                    client.infer(
                        model,
                        inputs,
                        outputs=[grpcclient.InferRequestedOutput(output)],
                        client_timeout=deadline_s,
                    )
                    answered.append(model)
                except InferenceServerException as e:
                    if "UNAVAILABLE" in str(e.status()) and C.QUEUE_FULL_MESSAGE.lower() in str(e).lower():
                        answered.append(f"{model} (refused: queue full)")
                        continue
                    return ProbeResult(False, time.monotonic() - t0, f"{model}: {e.status()} {e.message()}")
    except Exception as e:  # noqa: BLE001  no connection, a broken channel: not serving
        return ProbeResult(False, time.monotonic() - t0, f"{type(e).__name__}: {e}")
    return ProbeResult(True, time.monotonic() - t0, "answered: " + ", ".join(answered))


#: The models a client calls: their successes (and the llm engines' steps) are progress. The inner
#: models' are not: a request can pass the preprocessor and encoder and still never be answered.
ENTRY_MODELS = C.ENTRY_MODELS
_COUNTER = re.compile(
    r'^(?:nv_inference_request_success\{model="(?:' + "|".join(ENTRY_MODELS) + r')"[^}]*\}'
    r"|canary_llm_steps_total\{[^}]*\}) (\S+)$",
    re.M,
)


def progress_counter(metrics_url: str) -> float | None:
    """Work completed so far: requests answered at the entry points plus the llm engines' steps,
    from the metrics endpoint (None when it does not answer)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as r:
            text = r.read().decode(errors="replace")
    except OSError:
        return None
    return sum(float(v) for v in _COUNTER.findall(text))


class Watchdog:
    """Probes a running :class:`~canary_triton.serving.tritonserver.TritonServer` and recovers it when wedged
    (see the module docstring). ``events`` records what it saw: (seconds since start, what)."""

    def __init__(
        self,
        server,
        options: WatchdogOptions = WatchdogOptions(),
        prober: Callable[[str, float], ProbeResult] = probe,
        log: Callable[[str], None] = lambda line: print(f"canary-triton: {line}", file=sys.stderr, flush=True),
    ):
        self.server, self.options, self.prober, self.log = server, options, prober, log
        self.events: list[tuple[float, str]] = []
        self.changed = threading.Condition()  # notified at each event (callers wait on what it saw)
        self.recoveries = 0  # done in all
        self.gave_up = threading.Event()  # set when the server was stopped as unrecoverable
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="canary-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _event(self, what: str) -> None:
        with self.changed:
            self.events.append((time.monotonic() - self._t0, what))
            self.changed.notify_all()
        self.log(what)

    def wait_for_event(self, text: str, timeout_s: float) -> bool:
        """Whether an event containing ``text`` was seen within ``timeout_s``."""
        with self.changed:
            return self.changed.wait_for(lambda: any(text in e for _, e in self.events), timeout_s)

    def _metrics_url(self) -> str:
        return f"http://{self.server.opts.host}:{self.server.opts.metrics_port}/metrics"

    def check(self) -> bool:
        """One probe; False when it missed its deadline and nothing completed meanwhile."""
        before = progress_counter(self._metrics_url())
        result = self.prober(self.server.grpc_url, self.options.deadline_s)
        if result.ok:
            return True
        after = progress_counter(self._metrics_url())
        if before is not None and after is not None and after > before:
            self._event(f"probe failed ({result.detail}) but work completed meanwhile: busy, not wedged")
            return True
        self._event(f"probe failed after {result.seconds:.1f} s with no progress: {result.detail}")
        return False

    def _loop(self) -> None:
        missed = failed_recoveries = 0
        while not self._stop.wait(self.options.interval_s):
            proc = self.server.proc
            if proc is None or proc.poll() is not None:
                return
            if not self.server.is_ready():  # loading (a reload in progress): nothing to judge yet
                continue
            if self.check():
                if missed or failed_recoveries:
                    self._event("probe answered: serving")
                missed = failed_recoveries = 0
                continue
            missed += 1
            if missed < self.options.failures or self._stop.is_set():
                continue
            missed = 0
            if failed_recoveries >= self.options.max_recoveries:
                self._event(
                    f"still wedged after {failed_recoveries} recoveries: stopping the server "
                    "(serve exits non-zero; the orchestrator restarts it)"
                )
                self.gave_up.set()
                self.server.stop()
                return
            failed_recoveries += 1
            self.recover()

    def recover(self) -> None:
        """Dump every stub's stacks into the server log, then kill the stubs: the supervisor
        reloads each model (readiness is false until they are loaded again). Without a supervisor
        nothing would reload them: the server is stopped instead."""
        self.recoveries += 1
        if self.server.supervisor is None:
            self._event("wedged, and no stub supervisor to reload the models: stopping the server")
            self.gave_up.set()
            self.server.stop()
            return
        try:
            stacks = self.server.dump_stacks()
        except Exception:  # noqa: BLE001  evidence is best effort; recovery is not
            stacks = {}
        where = f" (stacks in {self.server.log_path})" if stacks and self.server.log_path else ""
        killed = []
        for model, pids in sorted(self.server.stub_pids().items()):
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(model)
                except ProcessLookupError:
                    pass
        self._event(
            f"wedged: killed the stubs of {', '.join(killed) or 'no model'}{where}; the supervisor reloads them"
        )

"""canary_triton/serving/watchdog.py: the end-to-end probe and the watchdog that recovers a wedged server.

Unit tests drive the watchdog's decisions with a stand-in server and prober. The served tests
wedge a real server the way the issue saw it (every model READY, nothing answered): the `llm`
stub is frozen with SIGSTOP, so every request waits on it. Every wait is on an event (the
watchdog's own record, a stub's pidfd) with a bound against a hang, never a sleep.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from canary_triton import contract as C
from canary_triton.client import CanaryClient, ClientOptions
from canary_triton.serving import watchdog as wd
from canary_triton.serving.tritonserver import ServerOptions, TritonServer
from canary_triton.serving.watchdog import ProbeResult, Watchdog, WatchdogOptions, probe

from .conftest import SERVER_START_TIMEOUT_S, free_port

BOUND_S = 600.0  # a bound against a hang, not a speed target


# -- decisions, with stand-ins ------------------------------------------------------------------
class FakeServer:
    def __init__(self, progress: list[float]):
        self.opts = ServerOptions(host="127.0.0.1", metrics_port=1)
        self.grpc_url = "127.0.0.1:1"
        self.proc = SimpleNamespace(poll=lambda: None)
        self.supervisor = object()
        self.log_path = None
        self.stopped = threading.Event()
        self.killed: list[int] = []
        self.progress = progress

    def is_ready(self):
        return True

    def dump_stacks(self):
        return {}

    def stub_pids(self):
        return {}

    def stop(self):
        self.stopped.set()


def watchdog(monkeypatch, results, progress, **options):
    """A watchdog over a stand-in server whose probes answer ``results`` in turn and whose
    progress counter reads ``progress`` in turn (both repeat their last value)."""
    reads = iter(progress)
    last = [progress[0]]

    def counter(url):
        last[0] = next(reads, last[0])
        return last[0]

    monkeypatch.setattr(wd, "progress_counter", counter)
    answers = iter(results)
    final = [results[-1]]

    def prober(url, deadline):
        final[0] = next(answers, final[0])
        return final[0]

    opts = WatchdogOptions(interval_s=0.001, deadline_s=1, **options)
    return Watchdog(FakeServer(progress), opts, prober=prober, log=lambda line: None)


OK, LATE = ProbeResult(True, 0.1, "answered"), ProbeResult(False, 1.0, "canary_qwen: Deadline Exceeded")


def test_a_failed_probe_while_work_completes_is_busy_not_wedged(monkeypatch):
    dog = watchdog(monkeypatch, [LATE], [1.0, 5.0])  # the counter moved between before and after
    assert dog.check() is True
    assert "busy, not wedged" in dog.events[-1][1]


def test_a_failed_probe_with_no_progress_is_a_miss(monkeypatch):
    dog = watchdog(monkeypatch, [LATE], [3.0])
    assert dog.check() is False and "no progress" in dog.events[-1][1]


def test_missed_probes_in_a_row_recover_then_stop_the_server_when_recovery_fails(monkeypatch):
    dog = watchdog(monkeypatch, [LATE], [3.0], failures=2, max_recoveries=2).start()
    assert dog.gave_up.wait(BOUND_S) and dog.server.stopped.is_set()
    assert dog.recoveries == 2  # two recoveries (each after two misses), then it gave up
    assert "stopping the server" in dog.events[-1][1]


def test_a_recovery_that_works_keeps_the_server(monkeypatch):
    dog = watchdog(monkeypatch, [LATE, LATE, OK], [3.0], failures=2)
    dog.start()
    assert dog.wait_for_event("probe answered: serving", BOUND_S)
    dog.stop()
    assert dog.recoveries == 1 and not dog.gave_up.is_set()


def test_without_a_supervisor_a_wedged_server_is_stopped(monkeypatch):
    dog = watchdog(monkeypatch, [LATE], [3.0], failures=1)
    dog.server.supervisor = None
    dog.start()
    assert dog.gave_up.wait(BOUND_S) and dog.server.stopped.is_set()


@pytest.mark.parametrize("field", ["interval_s", "deadline_s", "failures", "max_recoveries"])
def test_options_must_be_positive(field):
    with pytest.raises(ValueError, match=f"watchdog {field} is 0"):
        WatchdogOptions(**{field: 0})


def test_the_probe_says_not_serving_when_nothing_listens():
    result = probe(f"127.0.0.1:{free_port()}", deadline_s=5)
    assert not result.ok and "canary_qwen" in result.detail


# -- a real wedge -------------------------------------------------------------------------------
@pytest.fixture
def watched_server(exported_trained, tmp_path):
    opts = ServerOptions(
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        exit_timeout_s=10,
        watchdog=WatchdogOptions(interval_s=1, deadline_s=15, failures=2),
    )
    server = TritonServer(
        exported_trained / "model_repository", opts, workdir=tmp_path, log_path=tmp_path / "tritonserver.log"
    )
    try:
        yield server.start(SERVER_START_TIMEOUT_S)
    finally:
        for pids in server.stub_pids().values():  # a frozen stub must not outlive the test
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        server.stop()


@pytest.mark.served
def test_a_frozen_llm_is_detected_and_recovered_and_health_never_lies_meanwhile(watched_server, heldout):
    server = watched_server
    options = ClientOptions(url=server.grpc_url, protocol="grpc", retries=0, timeout_s=60)
    with CanaryClient(options=options) as client:
        before = client.transcribe(heldout[0][0])
    assert probe(server.grpc_url, 60).ok
    (llm_pid,) = server.stub_pids()[C.LLM_MODEL]
    os.kill(llm_pid, signal.SIGSTOP)  # READY everywhere, nothing answered: what the issue saw
    t0 = time.monotonic()
    assert server.watchdog.wait_for_event("wedged: killed the stubs", BOUND_S)
    detected = time.monotonic() - t0
    assert server.watchdog.wait_for_event("probe answered: serving", BOUND_S)  # its own probe, after the reloads
    recovered = time.monotonic() - t0
    assert server.is_ready() and probe(server.grpc_url, 60).ok
    print(f"\nwedge detected after {detected:.1f} s, serving again after {recovered:.1f} s")
    assert any("with no progress" in e for _, e in server.watchdog.events)
    assert C.LLM_MODEL in dict(server.supervisor.restarts)
    with CanaryClient(options=options) as client:
        assert client.transcribe(heldout[0][0]) == before
    assert not server.watchdog.gave_up.is_set()


# -- shutdown leaves nothing behind -------------------------------------------------------------
@pytest.mark.served
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_stub_survives_its_tritonserver(exported_trained, tmp_path, how):
    """After SIGTERM, and after SIGKILL of tritonserver itself (nothing of ours calls stop()),
    no stub of the repository is left past the exit timeout: each ends with its parent."""
    opts = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
    server = TritonServer(exported_trained / "model_repository", opts, workdir=tmp_path)
    server.start(SERVER_START_TIMEOUT_S)
    try:
        stubs = [pid for pids in server.stub_pids().values() for pid in pids]
        assert len(stubs) >= 10
        server.proc.send_signal(getattr(signal, how))
        server.proc.wait(timeout=opts.exit_timeout_s + 60)

        pidfds = []
        for pid in stubs:
            try:
                pidfds.append(os.pidfd_open(pid))
            except ProcessLookupError:  # already gone
                pass
        deadline = time.monotonic() + opts.exit_timeout_s + 5
        try:
            for fd in pidfds:  # readable once its process has ended
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"a stub outlived its tritonserver by {opts.exit_timeout_s + 5} s"
        finally:
            for fd in pidfds:
                os.close(fd)
    finally:
        server.stop()

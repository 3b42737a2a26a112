"""Soak: real clients and faults against one server for a fixed time; nothing may be lost.

For ``--minutes`` it runs at once: perf_analyzer ``--streaming`` on ``canary_qwen_stream`` (run
after run), the project's client transcribing held-out clips (each answer checked against the
transcript taken before the soak), streams dropped after their first piece, requests with a
deadline too short to meet, and a SIGKILL of a model's stub every ``--kill-every`` seconds (each
model in turn, the ``llm`` first; the stub supervisor reloads it; the watchdog recovers a wedge).
Then it waits until the server answers again and checks one more transcript.

It prints requests sent, answered, and failed by cause; **lost** (no answer and no error within
the client's 120 s deadline, or a perf_analyzer run still waiting on a stream after 300 s:
must be 0); stub deaths and reloads; wedges detected and recovered; tritonserver deaths (restarted
here as an orchestrator would, with the log line that says why); each process's memory at the
start and the end. Exit 0 when nothing was lost, every answer was right and the server serves at
the end; 1 otherwise.

Two limits of Triton 2.51 that the kills meet (docs/reliability.md): the streams in flight in a
killed *decoupled entry* model's stub (``canary_qwen_stream``, ``canary_qwen_long_stream``) are
never ended by Triton (a client without a deadline, such as perf_analyzer, waits for ever:
``--spare`` them to measure the rest), and ``tritonserver`` itself may abort
(``boost::interprocess::lock_exception``) when a stub dies holding its IPC lock.

    python -m benchmarks.soak [--export-dir DIR] [--minutes 20] [--kill-every 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import (
    EXIT_OK,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    group_memory,
    load_clips,
    machine_info,
    machine_line,
    markdown_table,
    write_outputs,
)
from canary_triton import contract as C
from canary_triton.client import CanaryClient, ClientOptions, ServerError
from canary_triton.client.perf_input import write_perf_input
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port
from canary_triton.serving.watchdog import WatchdogOptions, probe

PERF_ANALYZER = Path(sys.executable).parent / "perf_analyzer"
CLIENT_DEADLINE_S = 120.0  # a request with neither answer nor error by then is lost
PERF_RUN_BOUND_S = 300.0  # a perf_analyzer run (3 windows of 32 streams) still running by then waits on a lost stream
SERVER_RESTART_BOUND_S = 600.0


@dataclass
class Tally:
    counts: collections.Counter = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n


def _cause(e: Exception) -> str:
    if isinstance(e, ServerError):
        if "DEADLINE" in str(e.status).upper() or "deadline" in str(e).lower():
            return "deadline"
        return str(e.status).replace("StatusCode.", "") or "stream error (Triton sends no code on a stream)"
    return type(e).__name__


def run_soak(
    server: TritonServer,
    seconds: float,
    kill_every_s: float,
    work: Path,
    seed: int = 7,
    spare: tuple[str, ...] = (),
) -> dict:
    """Drive ``server`` (started with a stub supervisor and a watchdog) for ``seconds``; the stubs
    of the models in ``spare`` are never killed; the others are killed in turn, the ``llm``'s first."""
    rng = random.Random(seed)
    clips = load_clips(HELDOUT_MANIFEST, limit=12)
    rows = read_manifest(HELDOUT_MANIFEST)[:12]
    data = write_perf_input([r["audio_filepath"] for r in rows], work / "asr.json", max_new_tokens=16)
    options = ClientOptions(url=server.grpc_url, protocol="grpc", timeout_s=CLIENT_DEADLINE_S)
    with CanaryClient(options=options) as client:
        reference = [client.transcribe(c.samples) for c in clips]
    pgid = server.proc.pid
    memory_start = group_memory(pgid)
    tally = Tally()
    stop = threading.Event()
    deadline = time.monotonic() + seconds

    def transcribe_loop():
        with CanaryClient(options=options) as c:
            while not stop.is_set():
                i = rng.randrange(len(clips))
                tally.add("sent: transcribe")
                try:
                    text = c.transcribe(clips[i].samples)
                    tally.add("answered" if text == reference[i] else "answered WRONG")
                except Exception as e:  # noqa: BLE001  counted by cause
                    tally.add("lost" if _cause(e) == "deadline" else f"failed: {_cause(e)}")

    def drop_loop():
        with CanaryClient(options=options) as c:
            while not stop.is_set():
                tally.add("sent: stream dropped after its first piece")
                try:
                    pieces = c.stream(clips[rng.randrange(len(clips))].samples)
                    next(iter(pieces), None)
                    pieces.close()
                    tally.add("dropped by the client")
                except Exception as e:  # noqa: BLE001
                    tally.add(f"failed: {_cause(e)}")

    def deadline_loop():
        short = ClientOptions(url=server.grpc_url, protocol="grpc", timeout_s=0.01, retries=0)
        with CanaryClient(options=short) as c:
            while not stop.is_set():
                tally.add("sent: 10 ms deadline")
                try:
                    c.transcribe(clips[rng.randrange(len(clips))].samples)
                    tally.add("answered within 10 ms")
                except Exception as e:  # noqa: BLE001
                    tally.add(f"deadline missed ({_cause(e)})")
                stop.wait(0.05)  # a steady trickle, not a flood

    def perf_loop():
        while not stop.is_set():
            tally.add("perf_analyzer runs")
            try:
                r = subprocess.run(
                    [
                        str(PERF_ANALYZER),
                        *("-m", C.STREAM_MODEL, "-u", server.grpc_url, "-i", "grpc", "--streaming", "-b", "1"),
                        *("--input-data", str(data), "--concurrency-range", "8"),
                        *("--measurement-mode", "count_windows", "--measurement-request-count", "32"),
                        *("--stability-percentage", "1000"),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=PERF_RUN_BOUND_S,
                )
            except subprocess.TimeoutExpired:
                # perf_analyzer has no request deadline: a stream never answered holds it for ever
                tally.add("lost: perf_analyzer run still waiting on a stream after the bound")
                continue
            tally.add("perf_analyzer runs ok" if r.returncode == 0 else "perf_analyzer runs failed")

    kills = random.Random(seed)  # the kill order alone: the client loops draw from `rng` concurrently
    deaths: list[dict] = []
    earlier_reloads: list[tuple[str, float]] = []  # the reloads of a server that died since

    def kill_loop():
        # every model in turn, the llm first (its BLS callers wait on it: the worst fault), then
        # the others in a shuffled cycle
        order: list[str] = []
        while not stop.wait(kill_every_s):
            stubs = {m: p for m, p in server.stub_pids().items() if m not in spare}
            if not stubs:
                continue
            if not order:
                rest = sorted(set(stubs) - {C.LLM_MODEL})
                kills.shuffle(rest)
                order = ([C.LLM_MODEL] if C.LLM_MODEL in stubs else []) + rest
            model = order.pop(0)
            if model not in stubs:
                continue
            try:
                os.kill(stubs[model][0], signal.SIGKILL)
                tally.add(f"stub killed: {model}")
            except ProcessLookupError:
                pass

    def server_loop():
        # tritonserver itself may die (Triton 2.51's Python backend can abort when a stub dies
        # holding its IPC lock): counted, its log's last words kept, then restarted as an
        # orchestrator would restart the container
        while not stop.wait(1.0):
            if server.proc is not None and server.proc.poll() is not None:
                code = server.proc.returncode
                tail = server.log_path.read_text(errors="replace").splitlines()[-200:] if server.log_path else []
                cause = next((line for line in tail if "terminate called" in line or "Signal (" in line), "")
                deaths.append({"returncode": code, "cause": cause.strip()})
                if server.supervisor is not None:  # the restarted server gets a new supervisor
                    earlier_reloads.extend(server.supervisor.restarts)
                tally.add("tritonserver died (restarted)")
                server.stop()
                server.start(SERVER_RESTART_BOUND_S)

    threads = [threading.Thread(target=f, daemon=True) for f in (transcribe_loop, drop_loop, deadline_loop, perf_loop)]
    threads += [threading.Thread(target=f, daemon=True) for f in (kill_loop, server_loop)]
    for t in threads:
        t.start()
    while time.monotonic() < deadline:
        stop.wait(min(5.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    for t in threads:
        t.join(CLIENT_DEADLINE_S + 600)
    stuck_threads = sum(t.is_alive() for t in threads)
    bound = time.monotonic() + 600
    while not (server.is_ready() and probe(server.grpc_url, 60).ok) and time.monotonic() < bound:
        time.sleep(1.0)
    with CanaryClient(options=options) as c:
        final_ok = c.transcribe(clips[0].samples) == reference[0]
    return {
        "seconds": seconds,
        "counts": dict(sorted(tally.counts.items())),
        "stub_reloads": [
            (m, round(s, 1)) for m, s in earlier_reloads + (server.supervisor.restarts if server.supervisor else [])
        ],
        "watchdog": {
            "recoveries": server.watchdog.recoveries if server.watchdog else None,
            "events": [e for _, e in server.watchdog.events] if server.watchdog else [],
        },
        "stuck_client_threads": stuck_threads,
        "tritonserver_deaths": deaths,
        "serving_at_end": final_ok,
        "memory_start": memory_start,
        "memory_end": group_memory(server.proc.pid),  # a restarted server is a new group
    }


def soak_server(export_dir: Path, workdir: Path) -> TritonServer:
    """A server as ``canary-triton serve`` runs one (stub supervisor and watchdog on), not started."""
    opts = ServerOptions(
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        exit_timeout_s=10,
        watchdog=WatchdogOptions(),
    )
    return TritonServer(export_dir / "model_repository", opts, workdir=workdir, log_path=workdir / "tritonserver.log")


def passed(result: dict) -> bool:
    counts = result["counts"]
    return (
        counts.get("lost", 0) == 0
        and counts.get("answered WRONG", 0) == 0
        and result["stuck_client_threads"] == 0
        and result["serving_at_end"]
    )


def report(result: dict) -> str:
    rows = [[k, v] for k, v in result["counts"].items()]
    mem = [
        [
            p["process"],
            f"{p['rss_mib']:.0f}",
            next((f"{q['rss_mib']:.0f}" for q in end if q["process"] == p["process"]), "-"),
        ]
        for p in (result["memory_start"] or {}).get("processes", [])
        for end in [(result["memory_end"] or {}).get("processes", [])]
    ]
    return "\n\n".join(
        [
            markdown_table(["what", "count"], rows),
            f"stub reloads: {len(result['stub_reloads'])}; watchdog recoveries: {result['watchdog']['recoveries']}; "
            f"stuck client threads: {result['stuck_client_threads']}; serving at the end: {result['serving_at_end']}; "
            f"tritonserver deaths: {result.get('tritonserver_deaths', [])}",
            markdown_table(["process", "RSS MiB at start", "RSS MiB at end"], mem),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export-dir", help="an export folder (default: the demo's, ~/.cache/canary-triton/demo/export)")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--kill-every", type=float, default=60.0, help="seconds between stub kills")
    ap.add_argument("--spare", nargs="*", default=[], help="models whose stubs are never killed")
    ap.add_argument("--out", help="write soak.json and soak.md here")
    a = ap.parse_args(argv)
    export = Path(a.export_dir or Path.home() / ".cache" / "canary-triton" / "demo" / "export")
    if not (export / "model_repository").is_dir():
        print(
            f"error: {export} holds no model_repository: run `canary-triton demo` or pass --export-dir", file=sys.stderr
        )
        return 2
    info = machine_info()
    print(machine_line(info), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="canary-soak-") as tmp:
        with soak_server(export, Path(tmp)) as server:
            result = run_soak(server, a.minutes * 60, a.kill_every, Path(tmp), spare=tuple(a.spare))
    result["machine"] = info
    text = report(result)
    print(text)
    write_outputs(a.out, "soak", result, text)
    return EXIT_OK if passed(result) else EXIT_WRONG


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep the served CPU profile's batching settings: dynamic-batching queue delay x instances.

For each setting the repository is regenerated, tritonserver started, 4 warm-up requests sent
(excluded), then the clips sent with a fixed client concurrency. Prints RTFx (audio seconds /
wall seconds, pooled), requests/s and latency p50/p90 per setting, and fails (exit 1) if any
request errors or any transcript differs between settings. Usage:

    python -m benchmarks.serving_sweep [--checkpoint DIR] [--concurrency 8] [--repeat 2] \
        [--delays 0,2000,10000] [--instances 1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from canary_triton.bundled import DEMO_CHECKPOINT, DEMO_HELDOUT
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.evaluation.nemo_manifest import read_manifest
from canary_triton.export.options import ExportOptions
from canary_triton.export.pipeline import export_checkpoint
from canary_triton.export.repository import RepositoryOptions, write_repository
from canary_triton.frontend.audio import load_audio
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port


def run_setting(
    export_dir: Path, work: Path, repo_opts: RepositoryOptions, clips: list[np.ndarray], concurrency: int
) -> dict:
    write_repository(export_dir, "cpu", repo_opts)
    opts = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
    with TritonServer(export_dir / "model_repository", opts, workdir=work, log_path=work / "triton.log") as server:
        client = ClientOptions(url=server.grpc_url)
        for c in clips[:4]:
            transcribe(c, client)  # warm-up, excluded

        def one(c):
            t0 = time.perf_counter()
            text = transcribe(c, client)
            return text, time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, clips))
        wall = time.perf_counter() - t0
    audio_s = sum(len(c) for c in clips) / 16000
    lat = np.array([r[1] for r in results])
    return {
        "max_queue_delay_us": repo_opts.max_queue_delay_us,
        "instances": repo_opts.preprocessor_instances,
        "requests": len(clips),
        "rtfx": audio_s / wall,
        "requests_per_s": len(clips) / wall,
        "latency_p50_s": float(np.percentile(lat, 50)),
        "latency_p90_s": float(np.percentile(lat, 90)),
        "transcripts": [r[0] for r in results],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2, help="times the held-out set is sent per setting")
    ap.add_argument("--delays", default="0,2000,10000")
    ap.add_argument("--instances", default="1,2")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    clips = [load_audio(r["audio_filepath"], 16000) for r in read_manifest(DEMO_HELDOUT / "manifest.jsonl")] * a.repeat
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "export"
        export_checkpoint(a.checkpoint, export_dir, ExportOptions(profile="cpu", parity=False))
        for inst in (int(x) for x in a.instances.split(",")):
            for delay in (int(x) for x in a.delays.split(",")):
                opts = RepositoryOptions(preprocessor_instances=inst, encoder_instances=inst, max_queue_delay_us=delay)
                rows.append(run_setting(export_dir, Path(tmp), opts, clips, a.concurrency))
                r = rows[-1]
                print(
                    f"instances {inst} delay {delay:>6} us: RTFx {r['rtfx']:6.1f}  {r['requests_per_s']:5.1f} req/s  "
                    f"p50 {r['latency_p50_s'] * 1e3:6.0f} ms  p90 {r['latency_p90_s'] * 1e3:6.0f} ms",
                    flush=True,
                )
    same = all(r["transcripts"] == rows[0]["transcripts"] for r in rows)
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs; checkpoint {a.checkpoint}; {len(clips)} requests "
        f"({sum(len(c) for c in clips) / 16000:.1f} s of audio) at concurrency {a.concurrency}; "
        "4 warm-up requests excluded"
    )
    print("| instances | queue delay (us) | RTFx | req/s | p50 (ms) | p90 (ms) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['instances']} | {r['max_queue_delay_us']} | {r['rtfx']:.1f} | {r['requests_per_s']:.1f} | "
            f"{r['latency_p50_s'] * 1e3:.0f} | {r['latency_p90_s'] * 1e3:.0f} |"
        )
    best = max(rows, key=lambda r: r["rtfx"])
    print(
        f"best RTFx: instances {best['instances']}, delay {best['max_queue_delay_us']} us "
        f"({best['rtfx'] / min(r['rtfx'] for r in rows):.2f}x the slowest setting); transcripts identical: {same}"
    )
    if a.json:
        Path(a.json).write_text(
            json.dumps({"rows": [{k: v for k, v in r.items() if k != "transcripts"} for r in rows]}, indent=2)
        )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The OpenAI-compatible gateway's overhead: the same clips transcribed directly over gRPC
(``AsyncCanaryClient.transcribe``) and through the gateway (``POST /v1/audio/transcriptions``,
multipart, ``response_format=json``), at each client concurrency.

Both paths start from the encoded file bytes (the held-out FLAC files) and end with the text:
directly, the client decodes and sends over gRPC; through the gateway, the client uploads the
file over HTTP and the gateway decodes it and forwards it over its one gRPC channel. The gateway
runs as its own process (``canary-triton gateway``), as deployed, unless ``--gateway-url`` names
a running one. Per point: p50/p90 latency per request, RTFx (audio seconds / wall seconds),
requests/s; the overhead is gateway minus direct p50 and the RTFx ratio. Warm-up: one pass over
the clips on each path at concurrency 1, excluded; its direct transcripts are the reference and
every measured transcript must equal it (exit 1 otherwise). The two paths alternate per pass.

    python -m benchmarks.gateway_overhead [--url HOST:8001 | --export-dir OUT | --checkpoint DIR]
        [--gateway-url http://HOST:8080] [--manifest M.jsonl] [--limit N] [--concurrency 1,16]
        [--passes 3] [--out DIR]

Writes ``gateway_overhead.json`` and ``gateway_overhead.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    ServeOptions,
    latency_summary,
    machine_info,
    machine_line,
    markdown_table,
    served,
    write_outputs,
)
from canary_triton.client import AsyncCanaryClient
from canary_triton.client.options import ClientOptions
from canary_triton.evaluation.nemo_manifest import AUDIO_KEY, read_manifest
from canary_triton.serving.tritonserver import free_port

# soundfile and httpx are imported by the passes that use them: --help and the argument checks need neither.

PATHS = ("direct", "gateway")


def _files(manifest: Path, limit: int | None) -> list[tuple[str, bytes, float]]:
    import soundfile as sf

    rows = read_manifest(manifest)[:limit] if limit else read_manifest(manifest)
    return [(Path(r[AUDIO_KEY]).name, Path(r[AUDIO_KEY]).read_bytes(), sf.info(r[AUDIO_KEY]).duration) for r in rows]


class GatewayProcess:
    """``canary-triton gateway`` in its own process on a free port, until closed."""

    def __init__(self, triton_url: str, timeout_s: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "CANARY_TRITON_API_KEY"}
        self.log = tempfile.TemporaryFile()  # its access log: one line per request (a pipe would fill up)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canary_triton.cli",
                "gateway",
                "--triton-url",
                triton_url,
                "--port",
                str(self.port),
                "--max-in-flight",
                "256",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self._wait_ready(timeout_s)

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def _wait_ready(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError(f"the gateway was not ready within {timeout_s:.0f} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def _pass(path: str, files, concurrency: int, direct, http) -> tuple[list[str | None], list[float], float, list]:
    """One pass over ``files`` on one path: texts, per-request latencies, wall seconds, errors."""
    gate = asyncio.Semaphore(concurrency)
    texts: list[str | None] = [None] * len(files)
    latencies: list[float] = [0.0] * len(files)
    errors: list[str] = []

    async def one(i: int) -> None:
        name, raw, _ = files[i]
        async with gate:
            t0 = time.perf_counter()
            try:
                if path == "direct":
                    texts[i] = await direct.transcribe(raw)
                else:
                    r = await http.post(
                        "/v1/audio/transcriptions", data={"model": "canary-qwen-2.5b"}, files={"file": (name, raw)}
                    )
                    r.raise_for_status()
                    texts[i] = r.json()["text"]
            except Exception as e:  # noqa: BLE001  counted, reported
                errors.append(f"{path} {name}: {e}")
            latencies[i] = time.perf_counter() - t0

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(files))))
    return texts, latencies, time.perf_counter() - t0, errors


async def measure(triton_url: str, gateway_url: str, files, concurrency: Sequence[int], passes: int) -> dict[str, Any]:
    import httpx

    audio_s = sum(f[2] for f in files)
    rows, failures = [], []
    limits = httpx.Limits(max_connections=max(concurrency), max_keepalive_connections=max(concurrency))
    async with (
        AsyncCanaryClient(options=ClientOptions(url=triton_url, timeout_s=300)) as direct,
        httpx.AsyncClient(base_url=gateway_url, timeout=300, limits=limits) as http,
    ):
        reference, _, _, errs = await _pass("direct", files, 1, direct, http)
        _, _, _, errs2 = await _pass("gateway", files, 1, direct, http)  # warm-up, excluded
        failures += errs + errs2
        for c in concurrency:
            got: dict[str, dict[str, list]] = {p: {"lat": [], "wall": [], "wrong": []} for p in PATHS}
            for k in range(passes):
                for path in PATHS if k % 2 == 0 else PATHS[::-1]:
                    texts, lat, wall, errs = await _pass(path, files, c, direct, http)
                    failures += errs
                    got[path]["lat"] += lat
                    got[path]["wall"].append(wall)
                    got[path]["wrong"] += [
                        files[i][0] for i, t in enumerate(texts) if t is not None and t != reference[i]
                    ]
            for path in PATHS:
                wall = sum(got[path]["wall"])
                rows.append(
                    {
                        "path": path,
                        "concurrency": c,
                        "requests": passes * len(files),
                        **latency_summary(got[path]["lat"]),
                        "rtfx": passes * audio_s / wall,
                        "requests_per_s": passes * len(files) / wall,
                        "wrong_transcripts": got[path]["wrong"],
                    }
                )
                failures += [f"{path} c={c}: {n} differs from the direct transcript" for n in got[path]["wrong"]]
    overhead = []
    for c in concurrency:
        d, g = (next(r for r in rows if r["path"] == p and r["concurrency"] == c) for p in PATHS)
        overhead.append(
            {
                "concurrency": c,
                "p50_added_ms": g["latency_p50_ms"] - d["latency_p50_ms"],
                "p90_added_ms": g["latency_p90_ms"] - d["latency_p90_ms"],
                "rtfx_ratio": g["rtfx"] / d["rtfx"],
            }
        )
    return {"audio_s_per_pass": audio_s, "rows": rows, "overhead": overhead, "failures": failures}


def to_markdown(payload: dict[str, Any]) -> str:
    r = payload["result"]
    lines = [
        f"Gateway overhead: {payload['clips']} clips ({r['audio_s_per_pass']:.1f} s of audio) per pass, "
        f"{payload['passes']} passes per point; {machine_line(payload['machine'])}.",
        "",
        markdown_table(
            ["path", "concurrency", "requests", "p50 (ms)", "p90 (ms)", "RTFx", "req/s"],
            [
                [
                    x["path"],
                    x["concurrency"],
                    x["requests"],
                    x["latency_p50_ms"],
                    x["latency_p90_ms"],
                    x["rtfx"],
                    x["requests_per_s"],
                ]
                for x in r["rows"]
            ],
        ),
        "",
        markdown_table(
            ["concurrency", "p50 added (ms)", "p90 added (ms)", "RTFx gateway / direct"],
            [[o["concurrency"], o["p50_added_ms"], o["p90_added_ms"], f"{o['rtfx_ratio']:.2f}"] for o in r["overhead"]],
        ),
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running Triton's gRPC HOST:PORT (default: start one here)")
    p.add_argument("--export-dir", type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--gateway-url", help="a running gateway, e.g. http://127.0.0.1:8080 (default: start one here)")
    p.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST)
    p.add_argument("--limit", type=int)
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--passes", type=int, default=3, help="passes over the clips per path and concurrency")
    p.add_argument("--out", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        concurrency = [int(x) for x in a.concurrency.split(",")]
        if not concurrency or min(concurrency) < 1 or a.passes < 1:
            raise ValueError("concurrency values and --passes must be >= 1")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    machine = machine_info()
    files = _files(a.manifest, a.limit)
    payload: dict[str, Any] = {
        "benchmark": "gateway_overhead",
        "machine": machine,
        "clips": len(files),
        "passes": a.passes,
        "manifest": str(a.manifest),
        "concurrency": concurrency,
    }
    with served(ServeOptions(url=a.url, export_dir=a.export_dir, checkpoint=a.checkpoint, parity=False)) as target:
        gw = None if a.gateway_url else GatewayProcess(target.grpc_url)
        try:
            payload["server"] = {
                "how": target.how,
                "url": target.grpc_url,
                "gateway": a.gateway_url or f"{gw.url} (canary-triton gateway started here)",
            }
            payload["result"] = asyncio.run(
                measure(target.grpc_url, a.gateway_url or gw.url, files, concurrency, a.passes)
            )
        finally:
            if gw is not None:
                gw.close()
    md = to_markdown(payload)
    print(md)
    write_outputs(a.out, "gateway_overhead", payload, md)
    for f in payload["result"]["failures"]:
        print(f"FAILED: {f}", file=sys.stderr)
    return EXIT_WRONG if payload["result"]["failures"] else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

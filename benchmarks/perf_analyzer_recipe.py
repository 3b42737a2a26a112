"""perf_analyzer against the served ASR entry points: input data from real audio, a concurrency sweep.

Steps: (1) write perf_analyzer's ``--input-data`` JSON from audio files with
``canary-triton perf-input FILES -o OUT/input.json`` (one entry per file, variable-length ``audio``
with its own shape, optional ``max_new_tokens``) and check it against the served model's metadata
and config; (2) run

    perf_analyzer -m canary_qwen -b 1 --input-data OUT/input.json -i grpc -u URL \\
        --concurrency-range 1:8:1 --measurement-interval 10000 -f OUT/canary_qwen.csv

and with ``--streaming`` also the decoupled ``canary_qwen_stream`` (``--streaming`` flag of
perf_analyzer, gRPC only); (3) print each CSV as a table (throughput, latency percentiles, server
queue and compute per request) with an RTFx estimate (inferences/s x mean clip seconds:
perf_analyzer sends the entries in turn).

perf_analyzer 2.51 is installed by ``scripts/bootstrap.sh`` as ``.venv/bin/perf_analyzer``
(``scripts/install_perf_analyzer.sh``: the binary of the ``tritonclient==2.51.0`` wheel and the two
libraries it needs, no root); elsewhere it ships in NVIDIA's Triton SDK container
(``nvcr.io/nvidia/tritonserver:<release>-py3-sdk``). This script exits 3 when the binary is
missing or cannot run.

Exit codes: 0 done; 1 perf_analyzer failed (a request error, a refused input) or the input data do
not fit the served model; 2 usage; 3 no runnable perf_analyzer. Usage:

    python -m benchmarks.perf_analyzer_recipe --url HOST:8001 [--files A.flac B.wav ... | --manifest M.jsonl]
        [--limit N] [--concurrency-range 1:8:1] [--streaming] [--max-new-tokens N]
        [--measurement-interval 10000] [--perf-analyzer PATH] [--out DIR] [--dry-run]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    EXIT_NOT_RUN,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRONG,
    HELDOUT_MANIFEST,
    SAMPLE_RATE,
    machine_info,
    machine_line,
    markdown_table,
    write_outputs,
)
from canary_triton import contract as C
from canary_triton.cli import main as cli_main
from canary_triton.client.audio_input import as_audio
from canary_triton.client.perf_input import validate_perf_input
from canary_triton.evaluation.nemo_manifest import AUDIO_KEY, read_manifest

# tritonclient is imported by the check against a running server.

REQUIRED_GLIBC = (2, 38)
INSTALL_HINT = (
    "Run it where it is available: NVIDIA's SDK container nvcr.io/nvidia/tritonserver:<release>-py3-sdk "
    "(same release as the server, --net host), or `pip install perf-analyzer` on a system with glibc "
    ">= 2.38 (Ubuntu 24.04, Debian 13); then pass --perf-analyzer PATH or put it on PATH."
)
_LOADER_ERRORS = ("GLIBC_", "GLIBCXX_", "error while loading shared libraries", "cannot execute", "No such file")


@dataclass(frozen=True)
class Binary:
    path: str | None
    runnable: bool
    reason: str


def glibc_version() -> str:
    lib, ver = platform.libc_ver()
    return f"{lib} {ver}" if lib else "unknown libc"


def find_perf_analyzer(explicit: str | None) -> Binary:
    """The perf_analyzer to use and whether it starts here (a loader failure is not a start)."""
    path = explicit or shutil.which("perf_analyzer")
    here = f"this system has {glibc_version()}; the PyPI wheels need glibc >= {REQUIRED_GLIBC[0]}.{REQUIRED_GLIBC[1]}"
    if path is None or not Path(path).exists():
        where = f"{explicit} does not exist" if explicit else "perf_analyzer is not on PATH"
        return Binary(None, False, f"{where} ({here}). {INSTALL_HINT}")
    try:
        proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return Binary(path, False, f"{path} cannot be started: {e} ({here}). {INSTALL_HINT}")
    except subprocess.TimeoutExpired:
        return Binary(path, False, f"{path} --help did not return within 60 s. {INSTALL_HINT}")
    text = proc.stdout + proc.stderr
    if proc.returncode in (126, 127) or any(m in text for m in _LOADER_ERRORS):
        first = next((ln for ln in text.splitlines() if any(m in ln for m in _LOADER_ERRORS)), text.strip()[:200])
        return Binary(path, False, f"{path} cannot run here: {first.strip()} ({here}). {INSTALL_HINT}")
    return Binary(path, True, "ok")


def input_files(files: Sequence[Path] | None, manifest: Path, limit: int | None) -> list[Path]:
    if files:
        return list(files)[:limit]

    return [Path(r[AUDIO_KEY]) for r in read_manifest(manifest)[:limit]]


def write_input(files: Sequence[Path], out: Path, max_new_tokens: int | None) -> tuple[Path, list[str]]:
    """``canary-triton perf-input FILES -o out`` run in-process; returns the path and the command."""
    argv = ["perf-input", *map(str, files), "-o", str(out)]
    if max_new_tokens is not None:
        argv += ["--max-new-tokens", str(max_new_tokens)]
    if cli_main(argv) != 0:
        raise RuntimeError(f"canary-triton {shlex.join(argv)} failed")
    return out, ["canary-triton", *argv]


def check_input(url: str, model: str, input_json: Path) -> list[str]:
    """Problems of the input data against the served model (empty: it fits)."""
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url)
    try:
        meta = c.get_model_metadata(model, as_json=True)
        cfg = c.get_model_config(model, as_json=True)["config"]
    finally:
        c.close()
    return validate_perf_input(json.loads(input_json.read_text()), meta, cfg)


def perf_command(
    binary: str,
    model: str,
    url: str,
    input_json: Path,
    concurrency_range: str,
    interval_ms: int,
    csv_path: Path,
    streaming: bool,
) -> list[str]:
    cmd = [
        binary,
        "-m",
        model,
        "-b",
        "1",
        "--input-data",
        str(input_json),
        "-i",
        "grpc",
        "-u",
        url,
        "--concurrency-range",
        concurrency_range,
        "--measurement-interval",
        str(interval_ms),
        "-f",
        str(csv_path),
    ]
    return cmd + (["--streaming"] if streaming else [])


def parse_csv(path: Path) -> list[dict[str, Any]]:
    """perf_analyzer's ``-f`` CSV (latencies in microseconds), sorted by concurrency."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))

    def num(row: dict, key: str) -> float | None:
        v = row.get(key)
        return float(v) if v not in (None, "") else None

    out = []
    for r in rows:
        compute = [num(r, k) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")]
        out.append(
            {
                "concurrency": int(float(r["Concurrency"])),
                "inferences_per_s": num(r, "Inferences/Second"),
                "p50_ms": _ms(num(r, "p50 latency")),
                "p90_ms": _ms(num(r, "p90 latency")),
                "p95_ms": _ms(num(r, "p95 latency")),
                "p99_ms": _ms(num(r, "p99 latency")),
                "server_queue_ms": _ms(num(r, "Server Queue")),
                "server_compute_ms": _ms(sum(x for x in compute if x is not None))
                if any(x is not None for x in compute)
                else None,
            }
        )
    return sorted(out, key=lambda r: r["concurrency"])


def _ms(us: float | None) -> float | None:
    return us / 1e3 if us is not None else None


def render(p: dict[str, Any]) -> str:
    head = (
        f"Measured: perf_analyzer {p['binary']} over gRPC at {p['url']}, batch 1, concurrency range "
        f"{p['concurrency_range']}, measurement interval {p['measurement_interval_ms']} ms, input "
        f"{p['input']['entries']} clips (mean {p['input']['mean_seconds']:.2f} s) from {p['input']['source']}.\n"
        f"Machine (client side): {machine_line(p['machine'])}."
    )
    parts = [head]
    for run in p["runs"]:
        parts += ["", f"`{shlex.join(run['command'])}`", ""]
        if run.get("rows"):
            parts.append(
                markdown_table(
                    [
                        "concurrency",
                        "infer/s",
                        "RTFx (est.)",
                        "p50 ms",
                        "p90 ms",
                        "p99 ms",
                        "server queue ms",
                        "server compute ms",
                    ],
                    [
                        [
                            r["concurrency"],
                            r["inferences_per_s"],
                            r["rtfx_estimate"],
                            r["p50_ms"],
                            r["p90_ms"],
                            r["p99_ms"],
                            r["server_queue_ms"],
                            r["server_compute_ms"],
                        ]
                        for r in run["rows"]
                    ],
                )
            )
        else:
            parts.append(f"not run: {run['status']}")
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address")
    ap.add_argument("--files", type=Path, nargs="+", help="audio files for the input data")
    ap.add_argument("--manifest", type=Path, default=HELDOUT_MANIFEST, help="else: the files of this manifest")
    ap.add_argument("--limit", type=int, help="at most N files")
    ap.add_argument("--concurrency-range", default="1:8:1", help="START:END:STEP, as perf_analyzer takes it")
    ap.add_argument("--streaming", action="store_true", help=f"also run {C.STREAM_MODEL} with --streaming")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--measurement-interval", type=int, default=10000, help="ms per measurement window")
    ap.add_argument("--perf-analyzer", help="the binary (default: perf_analyzer on PATH)")
    ap.add_argument("--out", type=Path, default=Path("perf_analyzer_results"))
    ap.add_argument("--dry-run", action="store_true", help="write the input data and print the commands only")
    ap.add_argument("--no-check", action="store_true", help="do not check the input data against the server")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    parts = a.concurrency_range.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        print(
            f"error: --concurrency-range must be START[:END[:STEP]] of positive integers, got {a.concurrency_range!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    binary = find_perf_analyzer(a.perf_analyzer)
    if not binary.runnable and not a.dry_run:
        print(f"error: no runnable perf_analyzer: {binary.reason}", file=sys.stderr)
        return EXIT_NOT_RUN
    a.out.mkdir(parents=True, exist_ok=True)
    files = input_files(a.files, a.manifest, a.limit)
    input_json, gen_cmd = write_input(files, a.out / "input.json", a.max_new_tokens)
    print(f"input data: {shlex.join(gen_cmd)}", file=sys.stderr)

    seconds = [len(as_audio(f).samples) / SAMPLE_RATE for f in files]
    models = [(C.ENSEMBLE_MODEL, False)] + ([(C.STREAM_MODEL, True)] if a.streaming else [])
    if not a.no_check and not a.dry_run:
        for model, _ in models:
            problems = check_input(a.url, model, input_json)
            if problems:
                print(
                    f"error: {input_json} does not fit {model} at {a.url}: " + "; ".join(problems[:5]), file=sys.stderr
                )
                return EXIT_WRONG
    payload: dict[str, Any] = {
        "benchmark": "perf_analyzer",
        "machine": machine_info(),
        "binary": binary.path or "perf_analyzer",
        "url": a.url,
        "concurrency_range": a.concurrency_range,
        "measurement_interval_ms": a.measurement_interval,
        "input": {
            "file": str(input_json),
            "command": gen_cmd,
            "entries": len(files),
            "source": str(a.files or a.manifest),
            "mean_seconds": sum(seconds) / len(seconds),
        },
        "runs": [],
    }
    failed = False
    for model, streaming in models:
        csv_path = a.out / f"{model}.csv"
        cmd = perf_command(
            binary.path or "perf_analyzer",
            model,
            a.url,
            input_json,
            a.concurrency_range,
            a.measurement_interval,
            csv_path,
            streaming,
        )
        run: dict[str, Any] = {"model": model, "command": cmd}
        payload["runs"].append(run)
        if a.dry_run:
            print(shlex.join(cmd))
            run["status"] = "dry run" if binary.runnable else f"dry run; {binary.reason}"
            continue
        print(f"running: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        log = a.out / f"{model}.log"
        with log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        if rc != 0 or not csv_path.is_file():
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            run["status"] = f"perf_analyzer exited {rc}; log {log}: " + " | ".join(tail)
            print(f"error: {run['status']}", file=sys.stderr)
            failed = True
            continue
        run["status"] = "ok"
        run["rows"] = parse_csv(csv_path)
        for r in run["rows"]:
            ips = r["inferences_per_s"]
            r["rtfx_estimate"] = ips * payload["input"]["mean_seconds"] if ips is not None else None
    if a.dry_run:
        if not binary.runnable:
            print(f"note: {binary.reason}", file=sys.stderr)
        return EXIT_OK
    md = render(payload)
    print(md)
    for p in write_outputs(a.out, "perf_analyzer", payload, md):
        print(f"wrote {p}", file=sys.stderr)
    return EXIT_WRONG if failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

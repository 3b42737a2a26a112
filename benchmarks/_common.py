"""What the benchmarks share: the machine they ran on, clips, the server under test, token
counting, latency percentiles, Triton's per-model statistics, Markdown/JSON output and the plot.

Exit codes of every benchmark: 0 measured and every transcript right; 1 a transcript differs
from its reference or a request failed (the figures are still printed); 2 a usage error; 3 a
part could not run here (a model the server does not serve, perf_analyzer missing or unable to
run), said on stderr with what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest, as_json
from canary_triton.bundled import DEMO_CHECKPOINT, DEMO_HELDOUT
from canary_triton.checkpoint.tokenizer import load_tokenizer
from canary_triton.evaluation.nemo_manifest import AUDIO_KEY, TEXT_KEY, read_manifest
from canary_triton.export.repository import RepositoryOptions
from canary_triton.frontend.audio import load_audio
from canary_triton.model_params import parse_field
from canary_triton.runtime.cpu_profile import instruction_set, native_bf16_units
from canary_triton.runtime.loaders import load_serving_tokenizer
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port

# torch (through the export pipeline), tritonclient, matplotlib and PIL are imported by the
# functions that use them: a benchmark's --help and its argument checks load none of them.

EXIT_OK = 0
EXIT_WRONG = 1
EXIT_USAGE = 2
EXIT_NOT_RUN = 3

SAMPLE_RATE = C.MelParams().sample_rate
HELDOUT_MANIFEST = DEMO_HELDOUT / "manifest.jsonl"
DEFAULT_CHECKPOINT = DEMO_CHECKPOINT


# ------------------------------------------------------------------------------------------
# The machine
# ------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine_info() -> dict[str, Any]:
    """Where a figure was measured: platform, CPU model and count, GPUs, load at the time."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": _gpus(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
        info["torch_cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()

    info["instruction_set"] = instruction_set()
    info["native_bf16_units"] = native_bf16_units()
    info["commit"] = _commit()
    return info


def _commit() -> str | None:
    """The repository's commit (``+dirty`` with uncommitted changes), None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def machine_line(info: Mapping[str, Any]) -> str:
    gpus = "; ".join(info["gpus"]) if info.get("gpus") else "no GPU"
    load = info.get("load_average_1_5_15")
    isa = f", matrix instructions {info['instruction_set']}" if info.get("instruction_set") else ""
    commit = f"; commit {info['commit']}" if info.get("commit") else ""
    return (
        f"{info['platform']}, {info['cpu_model']}, {info['cpu_count']} CPUs ({info['cpus_usable']} usable){isa}, "
        f"{gpus}; load average {load} at start{commit}"
    )


# ------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """16 kHz mono float32 audio with its name and, when known, its reference text."""

    name: str
    samples: np.ndarray = field(compare=False, repr=False)
    text: str | None = None

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_clips(manifest: str | Path = HELDOUT_MANIFEST, limit: int | None = None) -> list[Clip]:
    """A NeMo manifest's clips (``audio_filepath``, optional ``text``), decoded once."""
    rows = read_manifest(manifest)
    if limit is not None:
        rows = rows[:limit]
    return [Clip(Path(r[AUDIO_KEY]).name, load_audio(r[AUDIO_KEY], SAMPLE_RATE), r.get(TEXT_KEY)) for r in rows]


def silence_gaps(n: int, seed: int, low_s: float = 0.3, high_s: float = 1.5) -> list[float]:
    """``n`` silence lengths drawn uniformly in [low_s, high_s] seconds (seeded)."""
    if not 0 <= low_s <= high_s:
        raise ValueError(f"silence range must satisfy 0 <= low <= high, got {low_s}..{high_s}")
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.uniform(low_s, high_s, size=n)]


def concatenate(clips: Sequence[Clip], gaps_s: Sequence[float], name: str) -> Clip:
    """One recording: the clips in order with ``gaps_s[i]`` seconds of silence after clip i."""
    parts: list[np.ndarray] = []
    for i, c in enumerate(clips):
        parts.append(np.asarray(c.samples, dtype=np.float32))
        if i < len(clips) - 1:
            parts.append(np.zeros(int(round(gaps_s[i] * SAMPLE_RATE)), dtype=np.float32))
    texts = [c.text for c in clips]
    text = " ".join(t for t in texts if t) if all(t is not None for t in texts) else None
    return Clip(name, np.concatenate(parts) if parts else np.zeros(0, np.float32), text)


def group_to_length(clips: Sequence[Clip], target_s: float, gap_s: float, prefix: str) -> list[Clip]:
    """Consecutive clips joined (``gap_s`` of silence between) into recordings of about
    ``target_s`` seconds each, never over the served limit; every clip is used once."""
    limit = C.MAX_AUDIO_SECONDS
    out: list[Clip] = []
    group: list[Clip] = []
    length = 0.0
    for c in clips:
        extra = c.seconds + (gap_s if group else 0.0)
        if group and length + extra > limit:
            out.append(concatenate(group, [gap_s] * len(group), f"{prefix}{len(out):03d}"))
            group, length, extra = [], 0.0, c.seconds
        group.append(c)
        length += extra
        if length >= target_s:
            out.append(concatenate(group, [gap_s] * len(group), f"{prefix}{len(out):03d}"))
            group, length = [], 0.0
    if group:
        out.append(concatenate(group, [gap_s] * len(group), f"{prefix}{len(out):03d}"))
    return out


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------
def latency_summary(latencies_s: Sequence[float], prefix: str = "latency") -> dict[str, float | None]:
    """p50/p90/p99 and mean in milliseconds (None when there are no samples)."""
    x = np.asarray(latencies_s, dtype=np.float64)
    if x.size == 0:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p90_ms": None, f"{prefix}_p99_ms": None, f"{prefix}_mean_ms": None}
    out = {f"{prefix}_p{q}_ms": float(np.percentile(x, q) * 1e3) for q in (50, 90, 99)}
    out[f"{prefix}_mean_ms"] = float(x.mean() * 1e3)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(out_dir: str | Path | None, stem: str, payload: Mapping[str, Any], markdown: str) -> list[Path]:
    """``stem.json`` and ``stem.md`` in ``out_dir`` (nothing when out_dir is None)."""
    if out_dir is None:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"{stem}.json", out / f"{stem}.md"
    j.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    m.write_text(markdown + "\n", encoding="utf-8")
    return [j, m]


# ------------------------------------------------------------------------------------------
# The server under test
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A served repository: its gRPC address, its export folder when known, and how it came."""

    grpc_url: str
    export_dir: Path | None
    how: str
    process_group: int | None = None  # tritonserver's process group when started here (its CPU time is known)
    metrics_url: str | None = None  # Triton's Prometheus endpoint when started here


@dataclass(frozen=True)
class ServeOptions:
    url: str | None = None  # a running server (gRPC host:port); None: start one here
    metrics_url: str | None = None  # that server's Prometheus endpoint (http://host:port/metrics), if known
    export_dir: Path | None = None  # an existing `canary-triton export` folder (served here or by url)
    checkpoint: Path | None = None  # exported here (CPU profile) when no export folder is given
    llm_dir: Path | None = None
    parity: bool = True  # run export's parity report against NeMo
    work_dir: Path | None = None  # export, server files and its log; default: a temporary folder
    repository: tuple[tuple[str, Any], ...] = ()  # RepositoryOptions fields for an export made here
    precision: str = "auto"  # CPU profile precision of an export made here (auto: bf16 with bf16 units)


def export_description(export_dir: Path | None) -> dict[str, Any] | None:
    """The served export's source and settings, from its ``export.json``."""
    if export_dir is None:
        return None

    m = ExportManifest.read(export_dir)
    return {
        "export_dir": str(export_dir),
        "profile": m.profile,
        "checkpoint": m.checkpoint,
        "model": as_json(m.model),
        "precision": as_json(m.precision),
    }


def served_settings(url: str, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Batching settings of served models from their configs: max batch, instances (count and
    kind), dynamic-batching queue delay and queue size."""
    c = triton_client(url)
    out: dict[str, dict[str, Any]] = {}
    try:
        for name in models:
            try:
                cfg = c.get_model_config(name, as_json=True)["config"]
            except Exception:  # noqa: BLE001  not served: left out
                continue
            groups = cfg.get("instance_group", [])
            dyn = cfg.get("dynamic_batching")
            out[name] = {
                "max_batch_size": int(cfg.get("max_batch_size", 0) or 0),
                "instances": [
                    f"{g.get('count', 1)}x{g.get('kind', 'KIND_AUTO').removeprefix('KIND_')}" for g in groups
                ],
                "max_queue_delay_us": int(dyn.get("max_queue_delay_microseconds", 0) or 0) if dyn is not None else None,
                "max_queue_size": int(dyn.get("default_queue_policy", {}).get("max_queue_size", 0) or 0)
                if dyn is not None
                else None,
            }
    finally:
        c.close()
    return out


PIPELINE_MODELS = (
    C.PREPROCESSOR_MODEL,
    C.ENCODER_MODEL,
    C.PROJECTOR_MODEL,
    C.LLM_MODEL,
    C.POSTPROCESSOR_MODEL,
)


def parse_repository_options(items: Sequence[str] | None) -> tuple[tuple[str, Any], ...]:
    """``KEY=VALUE`` strings -> RepositoryOptions fields (an export made here), typed by the field."""
    fields = {f.name: f for f in dataclasses.fields(RepositoryOptions)}
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--repository-option wants KEY=VALUE with KEY among {', '.join(fields)}; got {item!r}")
        out.append((key, parse_field(RepositoryOptions, key, value)))
    return tuple(out)


@contextmanager
def served(opts: ServeOptions) -> Iterator[Target]:
    """The server to measure: ``opts.url`` as given, or tritonserver started here on an export
    (made here from ``opts.checkpoint`` with the CPU profile when no export folder is given)."""
    if opts.url:
        yield Target(opts.url, opts.export_dir, f"running server at {opts.url} (given)", metrics_url=opts.metrics_url)
        return
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        work = Path(opts.work_dir) if opts.work_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        export_dir = Path(opts.export_dir) if opts.export_dir else None
        how = ""
        if export_dir is None or not (export_dir / "model_repository").is_dir():
            from canary_triton.export.options import ExportOptions
            from canary_triton.export.pipeline import export_checkpoint

            ckpt = Path(opts.checkpoint or DEFAULT_CHECKPOINT)
            export_dir = export_dir or work / "export"
            t0 = time.perf_counter()
            extra = dict(opts.repository)
            print(
                f"exporting {ckpt} (CPU profile{'' if opts.parity else ', no parity report'}"
                f"{f', repository {extra}' if extra else ''}) to {export_dir} ...",
                file=sys.stderr,
                flush=True,
            )
            export_checkpoint(
                ckpt,
                export_dir,
                ExportOptions(
                    profile="cpu", parity=opts.parity, precision=opts.precision, repository=RepositoryOptions(**extra)
                ),
                **({"llm_dir": opts.llm_dir} if opts.llm_dir else {}),
            )
            how = f"exported here from {ckpt} in {time.perf_counter() - t0:.0f} s{f' with {extra}' if extra else ''}; "
        sopts = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
        log = work / "tritonserver.log"
        t0 = time.perf_counter()
        with TritonServer(export_dir / "model_repository", sopts, workdir=work, log_path=log) as server:
            how += (
                f"tritonserver started here on {export_dir / 'model_repository'} (ready in "
                f"{time.perf_counter() - t0:.0f} s, log {log})"
            )
            yield Target(
                server.grpc_url,
                export_dir,
                how,
                server.proc.pid if server.proc is not None else None,
                f"http://{sopts.host}:{sopts.metrics_port}/metrics",
            )


#: The CPU llm models' counters of their in-flight batch (canary_triton/triton_models/llm.py).
LLM_STEP_COUNTERS = ("canary_llm_steps_total", "canary_llm_step_rows_total", "canary_llm_prefill_positions_total")


def llm_step_counters(metrics_url: str | None) -> dict[tuple[str, str, str], float]:
    """(metric, model, kind) -> value of the CPU llm models' step counters, from Triton's
    Prometheus text; empty where there is no endpoint or no such counter (the GPU profile)."""
    if not metrics_url:
        return {}

    with urllib.request.urlopen(metrics_url, timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in LLM_STEP_COUNTERS:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        out[(name, labels.get("model", ""), labels.get("kind", "prefill"))] = float(line.rsplit(" ", 1)[1])
    return out


def llm_steps_delta(before: Mapping, after: Mapping) -> list[dict[str, Any]]:
    """Per llm model over one run: decode steps and their mean rows, prefills, their mean rows
    and prompt positions (models without steps left out)."""
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    rows = []
    for model in sorted({m for _, m, _ in d}):
        steps = {k: d.get(("canary_llm_steps_total", model, k), 0.0) for k in ("prefill", "decode")}
        if not any(steps.values()):
            continue
        n_rows = {k: d.get(("canary_llm_step_rows_total", model, k), 0.0) for k in ("prefill", "decode")}
        rows.append(
            {
                "model": model,
                "decode_steps": int(steps["decode"]),
                "decode_mean_rows": n_rows["decode"] / steps["decode"] if steps["decode"] else None,
                "prefills": int(steps["prefill"]),
                "prefill_mean_rows": n_rows["prefill"] / steps["prefill"] if steps["prefill"] else None,
                "prefill_positions": int(d.get(("canary_llm_prefill_positions_total", model, "prefill"), 0.0)),
            }
        )
    return rows


def group_cpu_seconds(pgid: int | None) -> float | None:
    """User + system CPU seconds of every live process in a process group (tritonserver and its
    Python-backend stubs), from /proc; None where unknown."""
    if pgid is None or not Path("/proc").is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state ppid pgrp ... utime(12) stime(13)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def group_memory(pgid: int | None) -> dict[str, Any] | None:
    """Memory of every live process in a process group (tritonserver and each Python-backend
    stub, named by its model): peak RSS (VmHWM), RSS now, and the proportional set size (PSS:
    pages shared between the processes, such as libraries, counted once in the total); MiB."""
    if pgid is None or not Path("/proc").is_dir():
        return None
    procs = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            status = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines() if ":" in line)
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            pss = next(
                (
                    int(line.split()[1])
                    for line in (d / "smaps_rollup").read_text().splitlines()
                    if line.startswith("Pss:")
                ),
                0,
            )
        except (OSError, ValueError, StopIteration):
            continue
        name = Path(cmd[0].decode(errors="replace")).name
        model = next((Path(c.decode(errors="replace")).parts[-3] for c in cmd[1:] if c.endswith(b"model.py")), None)
        kib = lambda key: int(status.get(key, "0 kB").split()[0])  # noqa: E731
        procs.append(
            {
                "pid": int(d.name),
                "process": model or name,
                "peak_rss_mib": kib("VmHWM") / 1024,
                "rss_mib": kib("VmRSS") / 1024,
                "pss_mib": pss / 1024,
            }
        )
    procs.sort(key=lambda r: -r["peak_rss_mib"])
    return {
        "processes": procs,
        "total_pss_mib": sum(r["pss_mib"] for r in procs),
        "total_rss_mib": sum(r["rss_mib"] for r in procs),
    }


def self_peak_rss_mib() -> float:
    """This process's peak RSS so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def triton_client(url: str):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url)


def model_ready(url: str, model: str) -> bool:
    c = triton_client(url)
    try:
        return bool(c.is_model_ready(model))
    except Exception:  # noqa: BLE001  an unknown model raises on some servers
        return False
    finally:
        c.close()


def served_models(url: str) -> list[str]:
    """Ready models: the repository index, or (where the server restricts that protocol) the
    contract's model names probed one by one."""
    c = triton_client(url)
    try:
        index = c.get_model_repository_index(as_json=True)
        return sorted(m["name"] for m in index.get("models", []) if m.get("state", "READY") == "READY")
    except Exception:  # noqa: BLE001  e.g. a restricted model-repository protocol
        names = sorted({v for k, v in vars(C).items() if k.endswith("_MODEL") and isinstance(v, str)})
        return [n for n in names if model_ready(url, n)]
    finally:
        c.close()


# ------------------------------------------------------------------------------------------
# Triton's per-model statistics (queue vs compute)
# ------------------------------------------------------------------------------------------
_STAGES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def model_statistics(url: str) -> dict[str, dict[str, Any]]:
    """Cumulative statistics of every served model, keyed by name (counts and ns as ints)."""
    c = triton_client(url)
    try:
        raw = c.get_inference_statistics(as_json=True)
    finally:
        c.close()
    out: dict[str, dict[str, Any]] = {}
    for m in raw.get("model_stats", []):
        inf = m.get("inference_stats", {})
        out[m["name"]] = {
            "inference_count": int(m.get("inference_count", 0) or 0),
            "execution_count": int(m.get("execution_count", 0) or 0),
            **{f"{s}_count": int(inf.get(s, {}).get("count", 0) or 0) for s in _STAGES},
            **{f"{s}_ns": int(inf.get(s, {}).get("ns", 0) or 0) for s in _STAGES},
            "fail_count": int(inf.get("fail", {}).get("count", 0) or 0),
        }
    return out


def statistics_delta(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> list[dict[str, Any]]:
    """Per model over one run: requests, executions, mean batch, and per request the time in
    the queue and in compute (input + infer + output), in ms. Models without traffic are left out."""
    rows = []
    for name, a in sorted(after.items()):
        b = before.get(name, {})
        d = {k: a[k] - b.get(k, 0) for k in a}
        if d["success_count"] <= 0 and d["fail_count"] <= 0:
            continue
        n = max(d["success_count"], 1)
        compute_ns = d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"]
        rows.append(
            {
                "model": name,
                "requests": d["success_count"],
                "failed": d["fail_count"],
                "executions": d["execution_count"],
                "mean_batch": d["inference_count"] / d["execution_count"] if d["execution_count"] > 0 else None,
                "request_ms": d["success_ns"] / n / 1e6,
                "queue_ms": d["queue_ns"] / n / 1e6,
                "compute_ms": compute_ns / n / 1e6,
                "compute_infer_ms": d["compute_infer_ns"] / n / 1e6,
            }
        )
    return rows


def statistics_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return markdown_table(
        [
            "model",
            "requests",
            "executions",
            "mean batch",
            "server ms/request",
            "queue ms/request",
            "compute ms/request",
        ],
        [
            [
                r["model"],
                r["requests"],
                r["executions"],
                r["mean_batch"],
                r["request_ms"],
                r["queue_ms"],
                r["compute_ms"],
            ]
            for r in rows
        ],
    )


STATISTICS_NOTE = (
    "Triton's statistics per model over the measured requests (warm-up excluded): server "
    "ms/request is the model's whole time per request, queue = waiting for an instance, "
    "compute = input + infer + output. The ensemble's row is the end-to-end server time. The "
    "decoupled `llm` and the BLS models (`llm_unary`, `canary_qwen_stream`) return from "
    "execute at once and answer from their own threads, so their compute figures do not "
    "show where their time goes; the ensemble total minus the other steps does."
)


# ------------------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------------------
class TokenCounter:
    """Counts transcript tokens with the served checkpoint's tokenizer (NeMo's ``text_to_ids``)."""

    def __init__(self, tokenizer, source: str):
        self.tokenizer = tokenizer
        self.source = source

    @classmethod
    def load(cls, export_dir: Path | None = None, tokenizer_dir: Path | None = None) -> "TokenCounter | None":
        if tokenizer_dir is not None:
            return cls(load_tokenizer(tokenizer_dir), str(tokenizer_dir))
        if export_dir is not None:
            return cls(load_serving_tokenizer(export_dir), f"{export_dir} (llm_merged)")
        return None

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) if text else 0

    def leading_agreement(self, reference: str, other: str) -> tuple[int, int]:
        """(leading tokens of ``other`` equal to ``reference``'s, tokens of ``reference``), both
        texts tokenized again: how far two decodes stay together before they part."""
        ref = self.tokenizer.encode(reference) if reference else []
        got = self.tokenizer.encode(other) if other else []
        same = 0
        for a, b in zip(ref, got):
            if a != b:
                break
            same += 1
        return same, len(ref)


def leading_agreement_summary(
    tokens: "TokenCounter", references: Sequence[str], texts: Sequence[str | None]
) -> dict[str, Any]:
    """Over clips: leading tokens equal to the reference in all, per clip the median fraction,
    and the clips whose every token agrees."""
    pairs = [tokens.leading_agreement(r, t or "") for r, t in zip(references, texts)]
    fractions = sorted(a / n if n else 1.0 for a, n in pairs)
    return {
        "agree": sum(a for a, _ in pairs),
        "of": sum(n for _, n in pairs),
        "median_fraction": float(np.median(fractions)) if fractions else None,
        "clips_all_equal": sum(1 for (a, n), t, r in zip(pairs, texts, references) if (t or "") == r),
        "clips": len(pairs),
    }


# ------------------------------------------------------------------------------------------
# Plot
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One line of the plot: points (throughput, latency ms) labelled by concurrency."""

    name: str
    throughput: tuple[float, ...]
    latency_ms: tuple[float, ...]
    labels: tuple[str, ...]


def plot_latency_throughput(
    series: Sequence[Series], path: str | Path, title: str, xlabel: str, ylabel: str = "latency p50 (ms)"
) -> str | None:
    """A PNG of latency against throughput; matplotlib when installed, else drawn with Pillow.
    Returns the library used, or None (with a note on stderr) when neither is installed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
        for s in series:
            ax.plot(s.throughput, s.latency_ms, marker="o", label=s.name)
            for x, y, lab in zip(s.throughput, s.latency_ms, s.labels):
                ax.annotate(lab, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return "matplotlib"
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        print("note: neither matplotlib nor Pillow is installed: no plot written", file=sys.stderr)
        return None
    _pillow_plot(series, path, title, xlabel, ylabel, Image, ImageDraw)
    return "pillow"


def _pillow_plot(series, path, title, xlabel, ylabel, Image, ImageDraw) -> None:
    w, h, left, right, top, bottom = 960, 600, 80, 30, 50, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [x for s in series for x in s.throughput] or [0.0, 1.0]
    ys = [y for s in series for y in s.latency_ms] or [0.0, 1.0]
    x1, y1 = max(xs) * 1.1 or 1.0, max(ys) * 1.1 or 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (w - left - right) * x / x1, h - bottom - (h - top - bottom) * y / y1

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for i in range(6):
        gx, gy = x1 * i / 5, y1 * i / 5
        d.text((px(gx, 0)[0] - 10, h - bottom + 5), f"{gx:.3g}", fill="black")
        d.text((5, px(0, gy)[1] - 6), f"{gy:.3g}", fill="black")
        d.line([px(0, gy), px(x1, gy)], fill=(225, 225, 225))
    d.text((w // 2 - 60, h - 25), xlabel, fill="black")
    d.text((5, 20), ylabel, fill="black")
    d.text((left, 5), title[:150], fill="black")
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    for k, s in enumerate(series):
        col = colours[k % len(colours)]
        pts = [px(x, y) for x, y in zip(s.throughput, s.latency_ms)]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        for (x, y), lab in zip(pts, s.labels):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=col)
            d.text((x + 5, y - 14), lab, fill=col)
        d.text((w - right - 200, top + 10 + 15 * k), f"- {s.name}", fill=col)
    img.save(path)

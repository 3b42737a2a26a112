"""The CPU profile's run-time choices: precision from the CPU's instruction set, thread counts
from the cores this process may run on.

- **Precision.** bf16 where the CPU has native bf16 matrix units (AMX-BF16, or AVX-512 BF16's
  dot products), else fp32: on such CPUs oneDNN runs bf16 GEMMs at about twice (AVX-512 BF16) to
  many times (AMX) the fp32 rate and the weights take half the memory; without them bf16 is
  converted to fp32 inside every kernel (the slower, emulated path). fp32 is the exact-parity
  setting (token-identical to NeMo's fp32 greedy output).
- **Threads.** By default every core in the process's affinity mask (``os.sched_getaffinity``;
  a container's CPU set) for the encoder and for the LLM engine alike.
- **Priority.** The two stages share those cores, and the encoder goes first: the LLM engine's
  threads run at a higher nice value (``DEFAULT_LLM_NICE``), so while an encoder batch computes it
  has the cores and the LLM takes what is left. A decode step reads every weight once whatever
  its number of rows (memory-bound on CPU: 267 ms at 1 row, 300 ms at 8 at full size, bf16,
  2 cores), so an LLM that waits loses little while requests the encoder has not yet delivered
  are rows the LLM cannot fill. With equal shares an encoder execution took 5.6 s in the served
  run against 1.5-1.8 s alone (full size, 2 cores; benchmarks/README.md, runs 4-6).

No torch import at module level (the CLI imports this before it needs torch).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from canary_triton.errors import CanaryTritonError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")
#: The served encoder's precisions: fp32, or int8 (ONNX Runtime's dynamic quantization of its
#: MatMuls; canary_triton/export/onnx_encoder.py quantize_encoder_int8). ``auto`` (the default) follows the LLM:
#: see ``choose_encoder_precision``.
CPU_ENCODER_PRECISIONS = ("fp32", "int8")
TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}
#: /proc/cpuinfo flags of native bf16 matrix units, best first, with their usual names.
BF16_UNITS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512 BF16"}
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's ``flags`` from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_units(flags: frozenset[str] | None = None) -> list[str]:
    flags = cpu_flags() if flags is None else flags
    return [name for flag, name in BF16_UNITS.items() if flag in flags]


def instruction_set(flags: frozenset[str] | None = None) -> str:
    """The best matrix instruction set the CPU offers: AMX-BF16, AVX-512 BF16, AVX-512, AVX2 or
    baseline (x86 flags; other CPUs report baseline)."""
    flags = cpu_flags() if flags is None else flags
    units = native_bf16_units(flags)
    if units:
        return units[0]
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "baseline"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16
    reason: str  # one line: why (recorded in export.json, logged by the server)

    @property
    def torch_dtype_name(self) -> str:
        return TORCH_DTYPE_NAMES[self.precision]


def choose_precision(
    requested: str = "auto", require_native: bool = False, flags: frozenset[str] | None = None
) -> PrecisionChoice:
    """``auto``: bf16 with native bf16 units, else fp32. ``bf16`` without them: a warning naming
    the slower path, or an error with ``require_native``."""
    if requested not in ("auto", *PRECISIONS):
        raise CanaryTritonError(
            f"precision {requested!r} is not available in the CPU profile; choose auto, fp32 or bf16"
        )
    flags = cpu_flags() if flags is None else flags
    units = native_bf16_units(flags)
    isa = instruction_set(flags)
    if requested == "auto":
        if units:
            return PrecisionChoice("bf16", f"auto: this CPU has native bf16 units ({', '.join(units)})")
        return PrecisionChoice("fp32", f"auto: this CPU has no native bf16 units (best: {isa}), fp32 is faster")
    if requested == "bf16" and not units:
        msg = (
            f"bf16 requested but this CPU has no native bf16 units (AMX-BF16 or AVX-512 BF16; best: {isa}): "
            f"bf16 matrix products run on the slower emulated path (converted to fp32 in every kernel)"
        )
        if require_native:
            raise CanaryTritonError(msg + "; use --precision fp32 or auto")
        log.warning(msg)
        return PrecisionChoice("bf16", "requested; " + msg)
    return PrecisionChoice(requested, f"requested ({isa} CPU)")


def check_encoder_precision(requested: str) -> None:
    """A ValueError naming the choices unless ``requested`` is one of them (auto or
    :data:`CPU_ENCODER_PRECISIONS`)."""
    if requested not in ("auto", *CPU_ENCODER_PRECISIONS):
        raise ValueError(
            f"cpu encoder precision must be one of auto, {', '.join(CPU_ENCODER_PRECISIONS)}, got {requested!r}"
        )


def choose_encoder_precision(requested: str, llm_precision: str) -> PrecisionChoice:
    """The served encoder's precision. ``auto``: int8 when the LLM runs in bf16 (the fast setting,
    bounded by WER: tests/test_cpu_llm_bf16.py, tests/test_encoder_int8.py), fp32 when it runs in fp32
    (the exact-parity setting, token-identical to NeMo fp32 end to end)."""
    check_encoder_precision(requested)
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    if llm_precision == "bf16":
        return PrecisionChoice("int8", "auto: the LLM runs in bf16 (fast setting), the encoder's MatMuls in int8")
    return PrecisionChoice("fp32", f"auto: the LLM runs in {llm_precision} (exact parity), so does the encoder")


# -- threads ------------------------------------------------------------------------------------
def available_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: The LLM engine's nice value above the server's (0 = equal priority); see the module's note.
DEFAULT_LLM_NICE = 10
#: The highest nice value Linux accepts (a lower priority than 19 does not exist).
MAX_NICE = 19


def check_nice(value: int, what: str = "the LLM engine's nice value") -> int:
    if not 0 <= value <= MAX_NICE:
        raise CanaryTritonError(
            f"{what} is {value}; it must be between 0 (the encoder's priority) and {MAX_NICE} (the lowest)"
        )
    return value


def lower_thread_priority(nice: int) -> int:
    """Raise the calling thread's nice value by ``nice`` (Linux: a per-thread attribute, inherited
    by the threads it starts later, e.g. its OpenMP pool); returns the value it runs at now.
    Where the OS has no per-thread priority (not Linux) nothing changes."""
    check_nice(nice)
    if not hasattr(os, "setpriority"):
        return 0
    tid = threading.get_native_id()
    if nice:
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    return os.getpriority(os.PRIO_PROCESS, tid)


@dataclass(frozen=True)
class ThreadSplit:
    encoder: int
    llm: int


def check_threads(value: int, what: str, available: int | None = None) -> int:
    available = available_cores() if available is None else available
    if value <= 0 or value > available:
        raise CanaryTritonError(
            f"{what} is {value}; it must be between 1 and the {available} cores this process may run on"
        )
    return value


def split_threads(
    total: int | None = None, encoder: int | None = None, llm: int | None = None, available: int | None = None
) -> ThreadSplit:
    """Threads of the encoder and of the LLM engine (explicit counts are checked against the cores
    available). Default, from ``total`` (or every available core): both get them all; the LLM
    engine runs at a lower priority (``DEFAULT_LLM_NICE``), so an encoder batch takes the cores
    while it computes and the LLM the rest of the time (the encoder's ONNX Runtime threads do not
    spin while idle: see ``OnnxEncoderProjector``)."""
    available = available_cores() if available is None else available
    cap = check_threads(total, "the thread count", available) if total is not None else available
    enc = check_threads(encoder, "the encoder thread count", available) if encoder is not None else cap
    lm = check_threads(llm, "the LLM thread count", available) if llm is not None else cap
    return ThreadSplit(enc, lm)


def resolve_threads(value: int | None, part: str, available: int | None = None) -> int:
    """A model's ``threads`` parameter (model_params): a count (checked) or None / 0 for auto
    (``split_threads``' share of ``part`` = encoder | llm, from the cores this process may run on)."""
    if not value:
        return getattr(split_threads(available=available), part)
    return check_threads(value, f"the {part} thread count", available)

"""The CPU profile's run-time choices: precision from the CPU's flags, threads from its affinity."""

from __future__ import annotations

import logging
import os
import threading

import pytest
import torch

from canary_triton.errors import CanaryTritonError
from canary_triton.model_params import LlmParams
from canary_triton.runtime.cpu_profile import (
    DEFAULT_LLM_NICE,
    available_cores,
    choose_precision,
    cpu_flags,
    instruction_set,
    lower_thread_priority,
    resolve_threads,
    split_threads,
)

from .conftest import cli_in_process

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2 = frozenset({"sse4_2", "avx2"})


def test_instruction_set_names_the_best_matrix_unit(tmp_path):
    assert [instruction_set(f) for f in (AMX, AVX512_BF16, frozenset({"avx512f", "avx2"}), AVX2, frozenset())] == [
        "AMX-BF16",
        "AVX-512 BF16",
        "AVX-512",
        "AVX2",
        "baseline",
    ]
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"} and cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_precision_is_bf16_only_with_native_bf16_units():
    assert choose_precision("auto", flags=AMX).precision == "bf16"
    assert choose_precision("auto", flags=AVX512_BF16).precision == "bf16"
    c = choose_precision("auto", flags=AVX2)
    assert c.precision == "fp32" and "AVX2" in c.reason and c.torch_dtype_name == "float32"
    assert choose_precision("fp32", flags=AMX).precision == "fp32"


def test_bf16_without_bf16_units_warns_of_the_slower_path_or_fails_when_required(caplog):
    with caplog.at_level(logging.WARNING, logger="canary_triton.runtime.cpu_profile"):
        c = choose_precision("bf16", flags=AVX2)
    assert c.precision == "bf16" and "slower emulated path" in caplog.text
    with pytest.raises(CanaryTritonError, match="no native bf16 units.*slower emulated path.*--precision fp32"):
        choose_precision("bf16", require_native=True, flags=AVX2)
    assert choose_precision("bf16", require_native=True, flags=AMX).precision == "bf16"
    with pytest.raises(CanaryTritonError, match="not available in the CPU profile"):
        choose_precision("fp16", flags=AMX)


def test_threads_default_to_the_affinity_mask_for_encoder_and_llm_alike():
    assert split_threads(available=2).__dict__ == {"encoder": 2, "llm": 2}
    assert split_threads(available=8).__dict__ == {"encoder": 8, "llm": 8}
    assert split_threads(total=4, available=8).__dict__ == {"encoder": 4, "llm": 4}
    assert split_threads(encoder=3, llm=5, available=8).__dict__ == {"encoder": 3, "llm": 5}
    assert split_threads(available=1).__dict__ == {"encoder": 1, "llm": 1}

    assert available_cores() == len(os.sched_getaffinity(0))
    assert resolve_threads(None, "llm", available=6) == 6 and resolve_threads(None, "encoder", available=6) == 6
    assert resolve_threads(2, "llm", available=6) == 2


@pytest.mark.parametrize("value", [0, -1, 3])
def test_thread_counts_outside_the_cores_available_are_one_line_errors(value):
    with pytest.raises(CanaryTritonError, match=r"is -?\d+; it must be between 1 and the 2 cores"):
        split_threads(llm=value, available=2)
    if value:  # a model parameter of 0 means auto, as None does (exports before model_params wrote 0)
        with pytest.raises(CanaryTritonError, match="between 1 and the 2 cores"):
            resolve_threads(value, "encoder", available=2)
    else:
        assert resolve_threads(0, "encoder", available=2) == 2


def test_cli_export_rejects_bad_thread_counts_in_one_line(tmp_path):
    too_many = str(available_cores() + 1)
    r = cli_in_process("export", str(tmp_path), "-o", str(tmp_path / "out"), "--llm-threads", too_many)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0] == (
        f"error: the LLM thread count is {too_many}; it must be between 1 and the "
        f"{available_cores()} cores this process may run on"
    )


def _thread_nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_lower_thread_priority_lowers_the_calling_thread_only():
    main_before = _thread_nice(threading.get_native_id())
    seen = {}

    def worker():
        seen["returned"] = lower_thread_priority(3)
        seen["own"] = _thread_nice(threading.get_native_id())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["returned"] == seen["own"] == min(19, main_before + 3)
    assert _thread_nice(threading.get_native_id()) == main_before  # the caller's other threads keep theirs


def test_nice_parameter_defaults_to_the_cpu_profile_and_bad_values_are_one_line_errors():
    assert LlmParams.from_parameters({}).nice == DEFAULT_LLM_NICE
    assert LlmParams.from_parameters({"nice": "0"}).nice == 0 and LlmParams.from_parameters({"nice": "19"}).nice == 19
    for bad in ("-1", "20"):
        with pytest.raises(
            CanaryTritonError, match=r"^model llm: the LLM engine's nice value is -?\d+; it must be between 0 .* and 19"
        ):
            LlmParams.from_parameters({"nice": bad}, "llm")
    with pytest.raises(CanaryTritonError, match="parameter nice is 'low'; expected an integer$"):
        LlmParams.from_parameters({"nice": "low"})


def test_the_openmp_threads_a_lowered_thread_starts_inherit_its_priority():
    """What the LLM engine relies on: torch's intra-op (OpenMP) workers, started by the first
    parallel op of the lowered thread, run at its nice value too (Linux: /proc/self/task/*/stat)."""
    before = {int(t) for t in os.listdir("/proc/self/task")}
    seen = {}

    def worker():
        seen["nice"] = lower_thread_priority(2)
        torch.set_num_threads(2)
        a = torch.randn(512, 512)
        for _ in range(3):
            a = torch.tanh(a @ a)  # parallel regions: the pool of this thread starts here
        seen["tasks"] = {int(t): _thread_nice(int(t)) for t in os.listdir("/proc/self/task")}

    threads_before = torch.get_num_threads()
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    torch.set_num_threads(threads_before)
    started = {tid: n for tid, n in seen["tasks"].items() if tid not in before}
    assert len(started) >= 2, started  # the thread itself and at least one OpenMP worker
    assert set(started.values()) == {seen["nice"]}, started

"""canary_triton/cli/export_command.py: the ExportOptions ``canary-triton export ARGV`` runs with,
and its arguments' one-line errors (the gpu profile's sizing from the throughput model:
tests/test_gpu_throughput.py)."""

from __future__ import annotations

import pytest

from canary_triton.cli.export_command import export_options
from canary_triton.export.options import ExportOptions
from canary_triton.export.repository_options import RepositoryOptions
from canary_triton.export.tensorrt_engine import EngineOptions


def test_the_cpu_defaults_are_the_option_classes():
    opts = export_options(["ckpt", "-o", "out"])  # the cpu profile reads no checkpoint to size itself
    assert isinstance(opts, ExportOptions) and opts.profile == "cpu" and opts.sized_by_model == ()
    assert opts.repository == RepositoryOptions() and opts.engine.max_batch == EngineOptions.max_batch
    assert opts.parity and not opts.dry_run


def test_options_reach_their_fields():
    opts = export_options(
        ["ckpt", "-o", "out", "--llm-max-batch", "7", "--vad-min-speech-ms", "250", "--skip-parity", "--vad-gate"]
    )
    assert opts.repository.llm_max_batch == 7 and opts.llm_engine.max_batch == 7
    assert opts.repository.long_form_vad_min_speech_s == 0.25 and opts.repository.vad_gate and not opts.parity


def test_an_option_out_of_range_is_one_usage_line_naming_it(capsys):
    with pytest.raises(SystemExit) as e:
        export_options(["ckpt", "-o", "out", "--kv-cache-fraction", "2"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "canary-triton export: error: argument --kv-cache-fraction: must be in (0, 1), got 2"
    )

"""canary_triton/errors.py: the exceptions a user acts on, and how the command line shows them."""

from __future__ import annotations

import pytest

from canary_triton import errors
from canary_triton.cli import main
from canary_triton.client import commands


def test_the_hierarchy():
    assert issubclass(errors.CheckpointError, errors.CanaryTritonError)
    assert issubclass(errors.InputError, errors.CanaryTritonError)
    assert issubclass(errors.InputError, ValueError)  # callers catching ValueError for bad input see it
    assert not issubclass(errors.CheckpointError, ValueError)
    assert issubclass(errors.CanaryTritonError, Exception) and not issubclass(errors.CanaryTritonError, ValueError)


@pytest.mark.parametrize("cls", [errors.CanaryTritonError, errors.CheckpointError, errors.InputError])
def test_the_command_line_prints_one_error_line_and_exits_2(cls, monkeypatch, capsys):
    def boom(args):
        raise cls("the clip is 41.0 s; the limit is 40 s")

    monkeypatch.setattr(commands, "cmd_perf_input", boom)
    # main builds its parser after the stand-in is in place: the command runs it
    assert main(["perf-input", "x.wav", "-o", "out.json"]) == 2
    assert capsys.readouterr().err == "error: the clip is 41.0 s; the limit is 40 s\n"

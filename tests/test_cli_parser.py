"""canary_triton/cli/parser.py: every subcommand registered once, in help order, each with the
function it runs."""

from __future__ import annotations

import argparse

import pytest

from canary_triton.cli.parser import build_parser
from canary_triton.client.commands import CLIENT_COMMANDS


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_subcommand_in_help_order_runs_a_function():
    commands = _subcommands(build_parser())
    assert list(commands) == [
        "inspect",
        "export",
        "serve",
        "probe",
        "make-fixture",
        "reference",
        *CLIENT_COMMANDS,
        "gateway",
        "demo",
    ]
    assert all(callable(p.get_default("func")) for p in commands.values())


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([])
    assert e.value.code == 2 and "the following arguments are required: COMMAND" in capsys.readouterr().err

"""The ``canary-triton`` argument parser: one ``add_<command>`` per subcommand, in help order."""

from __future__ import annotations

import argparse
from typing import Callable

from canary_triton import __version__
from canary_triton.cli import arguments as A
from canary_triton.cli.commands import add_demo, add_inspect, add_make_fixture, add_probe, add_reference, add_serve
from canary_triton.cli.export_command import add_export
from canary_triton.client.commands import register as register_client
from canary_triton.gateway.command import register as register_gateway


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each subcommand's parser carries ``func``, the function it runs."""
    parser = argparse.ArgumentParser(prog="canary-triton", description="Serve NVIDIA Canary-Qwen-2.5B on Triton.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    add_inspect(add)
    add_export(add)
    add_serve(add)
    add_probe(add)
    add_make_fixture(add)
    add_reference(add)
    register_client(add, A.max_new_tokens)
    register_gateway(add, A.positive_int)
    add_demo(add)
    return parser

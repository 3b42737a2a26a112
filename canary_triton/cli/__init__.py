"""``canary-triton``: one command, with subcommands (``parser`` assembles them; ``commands`` and
``export_command`` hold them; ``arguments`` their shared value types).

Errors the user can fix print as one line (``error: ...``) with exit code 2; no traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Sequence

from canary_triton.bundled import ASSETS, DEMO_CHECKPOINT, DEMO_HELDOUT, DEMO_SAMPLE
from canary_triton.cli.arguments import LLM_DIR_HELP
from canary_triton.cli.export_command import export_options
from canary_triton.cli.parser import build_parser
from canary_triton.client.commands import CLIENT_COMMANDS
from canary_triton.errors import CanaryTritonError

__all__ = [
    "ASSETS",  # the bundled paths, kept importable from here (their home is canary_triton.bundled)
    "DEMO_CHECKPOINT",
    "DEMO_HELDOUT",
    "DEMO_SAMPLE",
    "LLM_DIR_HELP",
    "build_parser",
    "export_options",
    "main",
    "quiet_libraries",
]


def quiet_libraries() -> None:
    """Keep NeMo's and transformers' info logs and deprecation chatter off the user's stdout."""

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    logging.getLogger("nv_one_logger").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.ERROR)
    except ImportError:  # NeMo is only needed by export/reference commands
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("inspect", "gateway", "probe") + CLIENT_COMMANDS:  # client commands never import NeMo
        quiet_libraries()
    try:
        return int(args.func(args))
    except CanaryTritonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

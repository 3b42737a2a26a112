"""The GPU image's software stack: which versions are present, and whether they are the ones the
GPU profile is built for. Standard library only (the Dockerfile runs it before installing the
project): ``python3 -m canary_triton.gpu.stack --release 26.06 --require-supported``.

Why TensorRT-LLM 1.2.x and nothing later: TensorRT-LLM deletes the C++ ``inflight_batcher_llm``
backend (PR #15907) and the TensorRT engine flow (PR #15918) after 1.2, and multimodal serving
through Triton ends at 1.2 (its deprecation notice). NVIDIA's ``tritonserver:<release>-trtllm-
python-py3`` images 26.06 and 26.07 ship TensorRT-LLM 1.2.1 with TensorRT 10.14, Triton 2.70 and
Python 3.12; 26.06 is also the first release with the security fixes this project requires.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from typing import Callable, Iterable, Sequence

#: Distributions whose versions the first GPU run reports (import name in parentheses where it differs).
REPORTED = (
    "tensorrt_llm",
    "tensorrt",
    "torch",
    "transformers",
    "nvidia-modelopt",
    "onnx",
    "onnxruntime-gpu",
    "onnxruntime",
    "nemo_toolkit",
    "tritonclient",
    "numpy",
)
SUPPORTED_TRTLLM = "1.2."  # prefix
#: Releases of NVIDIA's Triton+TensorRT-LLM image known to ship TensorRT-LLM 1.2.x (and carrying
#: the security fixes of 26.06); a later release is refused unless it still ships 1.2.x.
KNOWN_RELEASES = {"26.06": "1.2.1", "26.07": "1.2.1"}
MIN_RELEASE = "26.06"


#: The distribution whose published requirements the image's installs must keep.
TRTLLM_DIST = "tensorrt_llm"
#: NeMo's requirements that TensorRT-LLM 1.2.1 pins otherwise, left to TensorRT-LLM's pin: NeMo 3.0.0
#: asks datasets>=3.2.0, TensorRT-LLM 1.2.1 datasets==3.1.0. The export imports NeMo's SALM, which
#: imports datasets only for concatenate_datasets and datasets.distributed.split_dataset_by_node
#: (nemo/collections/asr/data/huggingface/hf_audio_to_text.py; both in 3.1.0), never called here.
NEMO_DEFERS = ("datasets",)

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(line: str) -> tuple[str, str, str, str]:
    """``name[extras] spec ; marker`` -> (name, extras, spec, marker); spec is "@ url" for a URL."""
    body, _, marker = line.partition(";")
    m = _REQUIREMENT.match(body)
    if m is None:
        raise StackError(f"not a requirement: {line!r}")
    name, extras, spec = m.group(1), m.group(2) or "", m.group(3).strip()
    if spec.startswith("(") and spec.endswith(")"):
        spec = spec[1:-1].strip()
    return name, extras, spec, marker.strip()


def constraint_lines(requires: Iterable[str]) -> list[str]:
    """pip constraints from a distribution's ``Requires-Dist``: every versioned requirement of its
    base install (not of an extra), extras dropped (a constraint may not name them), environment
    markers kept; unversioned and URL requirements say nothing to constrain."""
    out = []
    for line in requires:
        name, _, spec, marker = split_requirement(line)
        if not spec or spec.startswith("@") or _EXTRA.search(marker):
            continue
        out.append(f"{name}{spec}" + (f"; {marker}" if marker else ""))
    return out


def requirements_for(requires: Iterable[str], extra: str, leave_out: Iterable[str] = ()) -> list[str]:
    """A distribution's requirements for its base install plus ``extra`` (the ``extra ==`` clause
    taken out of the marker), less those named in ``leave_out``."""
    skip = {canonical(n) for n in leave_out}
    out = []
    for line in requires:
        name, extras, spec, marker = split_requirement(line)
        wanted = _EXTRA.findall(marker)
        if (wanted and extra not in wanted) or canonical(name) in skip:
            continue
        marker = re.sub(r"\s*(and\s+)?" + _EXTRA.pattern + r"(\s+and)?\s*", " ", marker).strip()
        out.append(f"{name}{extras}{spec}" + (f"; {marker}" if marker else ""))
    return out


class StackError(Exception):
    """An unsupported stack: one line naming what was found and what is allowed."""


def installed_versions(
    names: Sequence[str] = REPORTED, version: Callable[[str], str] | None = None
) -> dict[str, str | None]:
    """``{distribution: version or None}`` from the installed metadata (nothing is imported)."""
    if version is None:
        version = metadata.version
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except Exception:  # PackageNotFoundError, or damaged metadata
            out[name] = None
    return out


def _release_key(release: str) -> tuple[int, int]:
    try:
        year, month = release.split(".")
        return int(year), int(month)
    except ValueError:
        raise StackError(f"TRITON_RELEASE {release!r} is not a release name like {MIN_RELEASE}") from None


def check_release(release: str, trtllm_version: str | None) -> str:
    """The TensorRT-LLM version of ``release`` if the GPU profile supports it; else StackError."""
    allowed = (
        f"releases {MIN_RELEASE} or later that ship TensorRT-LLM {SUPPORTED_TRTLLM}x (known: "
        f"{', '.join(sorted(KNOWN_RELEASES))})"
    )
    if _release_key(release) < _release_key(MIN_RELEASE):
        raise StackError(f"TRITON_RELEASE {release} is older than {MIN_RELEASE}; allowed: {allowed}")
    if trtllm_version is None:
        raise StackError(
            f"TRITON_RELEASE {release}: TensorRT-LLM is not installed in the image (use the "
            f"-trtllm-python-py3 image); allowed: {allowed}"
        )
    if not trtllm_version.startswith(SUPPORTED_TRTLLM):
        raise StackError(
            f"TRITON_RELEASE {release} ships TensorRT-LLM {trtllm_version}; allowed: {allowed}. "
            "Later TensorRT-LLM removes the C++ tensorrtllm backend and the TensorRT engine flow "
            "(see docs/deployment.md, migrating past TensorRT-LLM 1.2)"
        )
    return trtllm_version


def main(argv: Sequence[str] | None = None, version: Callable[[str], str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m canary_triton.gpu.stack",
        description="Report the GPU image's versions; refuse unsupported releases.",
    )
    parser.add_argument("--release", default="", help="the image's TRITON_RELEASE (e.g. 26.06)")
    parser.add_argument(
        "--require-supported",
        action="store_true",
        help="exit 2 with a one-line error unless the release ships TensorRT-LLM 1.2.x",
    )
    parser.add_argument(
        "--trtllm-constraints",
        metavar="FILE",
        help="write TensorRT-LLM's published requirements (its installed metadata) as pip constraints",
    )
    parser.add_argument(
        "--nemo-requirements",
        metavar="FILE",
        help="write NeMo's [asr] requirements less those TensorRT-LLM pins otherwise (NEMO_DEFERS)",
    )
    args = parser.parse_args(argv)
    if args.trtllm_constraints or args.nemo_requirements:
        if args.trtllm_constraints:
            lines = constraint_lines(metadata.requires(TRTLLM_DIST) or [])
            with open(args.trtllm_constraints, "w") as f:
                f.write("".join(f"{line}\n" for line in lines))
        if args.nemo_requirements:
            lines = requirements_for(metadata.requires("nemo_toolkit") or [], "asr", NEMO_DEFERS)
            with open(args.nemo_requirements, "w") as f:
                f.write("".join(f"{line}\n" for line in lines))
        return 0
    versions = installed_versions(version=version)
    for name, v in versions.items():
        print(f"{name}\t{v or '-'}")
    if args.require_supported:
        try:
            check_release(args.release or "?", versions.get("tensorrt_llm"))
        except StackError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

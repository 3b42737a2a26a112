"""The ``model.py`` of each Python model in a generated repository: a thin shell that imports
``canary_bootstrap`` first (the stub's locale and ``sys.path``), then exposes the model's class in
``canary_triton.triton_models`` as Triton's ``TritonPythonModel`` over the backend's ``pb_utils``.

Written by the repository generator (:mod:`canary_triton.export.repository`) beside each Python
model's ``config.pbtxt``, with ``canary_bootstrap.py`` (a file of
``canary_triton/triton_models/``, copied as it is). The shells hold no code of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from canary_triton import contract as C

#: The class of each Python model of the CPU repository (a module of canary_triton.triton_models,
#: a class in it). Two pairs of models share a class: the base-Qwen3 ``llm_base`` runs the
#: ``llm``'s, the streamed long form the unary one's.
PYTHON_MODELS: dict[str, tuple[str, str]] = {
    C.PREPROCESSOR_MODEL: ("preprocessor", "PreprocessorModel"),
    C.ENCODER_MODEL: ("encoder", "EncoderModel"),
    C.PROJECTOR_MODEL: ("projector", "ProjectorModel"),
    C.POSTPROCESSOR_MODEL: ("postprocessor", "PostprocessorModel"),
    C.LLM_MODEL: ("llm", "LlmModel"),
    C.LLM_BASE_MODEL: ("llm", "LlmModel"),
    C.LLM_UNARY_MODEL: ("llm_unary", "LlmUnaryModel"),
    C.STREAM_MODEL: ("canary_qwen_stream", "StreamModel"),
    C.LLM_MODE_MODEL: ("canary_qwen_llm", "LlmModeModel"),
    C.ASK_MODEL: ("canary_qwen_ask", "AskModel"),
    C.LONG_FORM_MODEL: ("canary_qwen_long", "LongFormModel"),
    C.LONG_FORM_STREAM_MODEL: ("canary_qwen_long", "LongFormModel"),
}

#: Imported first by every shell; copied beside it.
BOOTSTRAP = Path(__file__).resolve().parents[1] / "triton_models" / "canary_bootstrap.py"

SHELL = '''"""Triton model `{model}`: a thin shell over {module}.{cls}
(written by canary-triton export)."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)
import triton_python_backend_utils as pb_utils  # noqa: E402

from {module} import {cls}  # noqa: E402


class TritonPythonModel({cls}):
    def __init__(self):
        super().__init__(pb_utils)
'''


def shell_source(model: str) -> str:
    """The ``model.py`` text of the Python model ``model``."""
    module, cls = PYTHON_MODELS[model]
    return SHELL.format(model=model, module=f"canary_triton.triton_models.{module}", cls=cls)


def write_shell(model: str, version_dir: Path) -> None:
    """Write ``model.py`` and ``canary_bootstrap.py`` into ``version_dir`` (``<model>/1``)."""
    (version_dir / "model.py").write_text(shell_source(model))
    shutil.copy2(BOOTSTRAP, version_dir / BOOTSTRAP.name)

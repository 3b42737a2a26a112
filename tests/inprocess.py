"""The CPU repository's Python models all loaded in one process over one fake ``pb_utils``, each
reachable through BLS by its name, and its ensembles run step by step (no tritonserver)."""

from __future__ import annotations

from pathlib import Path

import torch

from canary_triton import contract as C
from canary_triton.triton_models.canary_qwen_ask import AskModel
from canary_triton.triton_models.canary_qwen_llm import LlmModeModel
from canary_triton.triton_models.canary_qwen_long import LongFormModel
from canary_triton.triton_models.canary_qwen_stream import StreamModel
from canary_triton.triton_models.encoder import EncoderModel
from canary_triton.triton_models.llm import LlmModel
from canary_triton.triton_models.llm_unary import LlmUnaryModel
from canary_triton.triton_models.postprocessor import PostprocessorModel
from canary_triton.triton_models.preprocessor import PreprocessorModel
from canary_triton.triton_models.projector import ProjectorModel

from .fake_pb_utils import FakePbUtils, ensemble_route, load_model

#: each Python model of the CPU repository and its class
CLASSES = {
    C.PREPROCESSOR_MODEL: PreprocessorModel,
    C.ENCODER_MODEL: EncoderModel,
    C.PROJECTOR_MODEL: ProjectorModel,
    C.POSTPROCESSOR_MODEL: PostprocessorModel,
    C.LLM_MODEL: LlmModel,
    C.LLM_BASE_MODEL: LlmModel,
    C.LLM_UNARY_MODEL: LlmUnaryModel,
    C.STREAM_MODEL: StreamModel,
    C.LLM_MODE_MODEL: LlmModeModel,
    C.LONG_FORM_MODEL: LongFormModel,
    C.LONG_FORM_STREAM_MODEL: LongFormModel,
    C.ASK_MODEL: AskModel,
}


class InProcess:
    """``models``: name -> initialized instance; ``pb``: the fake they share (BLS routes set)."""

    def __init__(self, export_dir: Path, names=None, parameters: dict[str, dict[str, str]] | None = None):
        repo = Path(export_dir) / "model_repository"
        self.pb = FakePbUtils()
        self.models = {}
        threads = torch.get_num_threads()
        try:
            for name in names or CLASSES:
                self.models[name] = load_model(CLASSES[name], repo, name, self.pb, (parameters or {}).get(name))
                self.pb.route(name, self.models[name])
        finally:
            torch.set_num_threads(threads)  # the preprocessor and llm set the process's torch threads
        self.pb.route(C.ENSEMBLE_MODEL, ensemble_route(self.pb, repo, C.ENSEMBLE_MODEL))

    def __getitem__(self, name: str):
        return self.models[name]

    def close(self) -> None:
        for model in self.models.values():
            if hasattr(model, "finalize"):  # optional, as in Triton
                model.finalize()

"""Triton model `postprocessor`: token ids -> text with NeMo's rules."""

from __future__ import annotations

from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.model_params import PostprocessorParams
from canary_triton.runtime.loaders import load_serving_tokenizer
from canary_triton.triton_models.adapter import artifacts_dir, read_params
from canary_triton.triton_models.base import BatchedModel
from canary_triton.triton_models.tensor_checks import check_output_ids


class PostprocessorModel(BatchedModel):
    def initialize(self, args):
        export = artifacts_dir(args, read_params(args, PostprocessorParams))
        self.tokenizer = load_serving_tokenizer(export)
        self.vocab_rows = ExportManifest.read(export).model.vocab_rows

    def check(self, request):
        """The text of the first beam's ids, up to its length (decoded here: a request whose ids
        fail to decode fails alone)."""
        ids = check_output_ids(
            self.input(request, C.OUTPUT_IDS.name),  # [1, beams, L]
            self.input(request, C.SEQUENCE_LENGTH.name),  # [1, beams]
            self.vocab_rows,
        )
        return self.tokenizer.decode(ids)

    def run(self, items):
        return [[self.string_tensor(C.TRANSCRIPT.name, text)] for text in items]

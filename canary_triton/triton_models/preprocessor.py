"""Triton model `preprocessor`: 16 kHz audio -> mel features + ASR prompt ids.

With the VAD gate on (parameter `vad_gate`, export --vad-gate; off by default: exact NeMo
parity), a clip where the long-form segmenter's detector finds no speech gets
request_output_len = contract.NO_SPEECH_OUTPUT_LEN, and the LLM is not run for it.
Each request is checked on its own; the valid ones run as one batch."""

from __future__ import annotations

import numpy as np
import torch

from canary_triton import contract as C
from canary_triton.frontend.preprocess import asr_output_limit, validate_audio, validate_max_new_tokens
from canary_triton.longform.segmenter import has_speech, prepare
from canary_triton.model_params import PreprocessorParams
from canary_triton.runtime.loaders import load_preprocessor
from canary_triton.triton_models.adapter import artifacts_dir, read_params, scalar_array
from canary_triton.triton_models.base import BatchedModel


class PreprocessorModel(BatchedModel):
    def initialize(self, args):
        params = read_params(args, PreprocessorParams)
        torch.set_num_threads(params.threads)
        self.pre, self.ids = load_preprocessor(artifacts_dir(args, params), params.mel_bucket_seconds)
        self.gate = params.segment if params.vad_gate else None
        if self.gate is not None:
            prepare(self.gate)

    def check(self, request):
        """(audio [samples], the request's output token limit)."""
        audio = validate_audio(self.input(request, C.AUDIO.name), self.pre.limits)
        limit = validate_max_new_tokens(self.input(request, C.MAX_NEW_TOKENS.name, optional=True))
        limit = asr_output_limit(limit, len(audio), self.pre.limits.sample_rate)  # hallucination guard
        if self.gate is not None and not has_speech(audio, self.pre.limits.sample_rate, self.gate):
            limit = C.NO_SPEECH_OUTPUT_LEN
        return audio, limit

    def run(self, items):
        out = []
        for (_, limit), pre in zip(items, self.pre([a for a, _ in items])):
            out.append(
                [
                    self.pb.Tensor(C.MEL.name, pre.mel[None]),
                    self.pb.Tensor(C.MEL_LENGTH.name, scalar_array(pre.mel_length, np.int64)),
                    self.pb.Tensor(C.INPUT_IDS.name, pre.input_ids[None]),
                    self.pb.Tensor(C.INPUT_LENGTHS.name, scalar_array(len(pre.input_ids))),
                    self.pb.Tensor(C.REQUEST_OUTPUT_LEN.name, scalar_array(limit)),
                    self.pb.Tensor(C.END_ID.name, scalar_array(self.ids.eos)),
                    self.pb.Tensor(C.PAD_ID.name, scalar_array(self.ids.pad)),
                ]
            )
        return out

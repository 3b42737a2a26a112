"""Triton model `canary_qwen_ask` (BLS): audio + instruction -> transcript + answer, in one call.

Built on the two modes: the audio goes to `canary_qwen` (or `canary_qwen_long` when it is longer
than the model's 40 s), then the instruction and the transcript go to `canary_qwen_llm` (the base
Qwen3) in NeMo's LLM-mode prompt format (contract.llm_mode_text). The answer's `finish_reason`
is `canary_qwen_llm`'s, passed on.
"""

from __future__ import annotations

from canary_triton import contract as C
from canary_triton.frontend.preprocess import decode_text, validate_audio
from canary_triton.longform.transcribe import LongFormOptions
from canary_triton.model_params import AskParams
from canary_triton.runtime.loaders import export_mel_params
from canary_triton.triton_models.adapter import artifacts_dir, first_string, read_params, unary_call
from canary_triton.triton_models.base import ThreadedModel


class AskModel(ThreadedModel):
    def initialize(self, args):
        params = read_params(args, AskParams)
        mel = export_mel_params(artifacts_dir(args, params))
        self.short_limit = int(C.MAX_AUDIO_SECONDS * mel.sample_rate)
        # checked here as well: error codes do not survive a BLS hop in Triton 2.51
        self.limits = LongFormOptions(max_seconds=params.max_seconds).limits(mel)
        self.start_workers(params)

    def serve(self, request, sender):
        pb = self.pb
        audio = pb.get_input_tensor_by_name(request, C.AUDIO.name)
        validate_audio(self.input(request, C.AUDIO.name), self.limits)
        instruction = decode_text(self.input(request, C.TEXT_INPUT.name).reshape(-1)[0], role="the instruction")
        asr = C.LONG_FORM_MODEL if audio.as_numpy().size > self.short_limit else C.ENSEMBLE_MODEL
        text = unary_call(pb, asr, [audio], [C.TRANSCRIPT.name])[C.TRANSCRIPT.name]
        llm_inputs = [self.string_tensor(C.TEXT_INPUT.name, C.llm_mode_text(instruction, first_string(text)))]
        for spec in (C.MAX_NEW_TOKENS, C.TEMPERATURE, C.TOP_P, C.SEED):
            t = pb.get_input_tensor_by_name(request, spec.name)
            if t is not None:  # [1] when declared with reshape: [] -> [1, 1] as the called model takes it
                llm_inputs.append(pb.Tensor(spec.name, t.as_numpy().reshape(1, 1)))
        answer = unary_call(pb, C.LLM_MODE_MODEL, llm_inputs, [C.TEXT_OUTPUT.name, C.FINISH_REASON.name])
        self.send(
            sender,
            [text] + [pb.Tensor(spec.name, answer[spec.name].as_numpy()) for spec in (C.TEXT_OUTPUT, C.FINISH_REASON)],
        )

"""Triton models `canary_qwen_long` (unary) and `canary_qwen_long_stream` (decoupled): audio of
any length up to the long-form limit -> transcript (+ segments: longform.segment.Segment, as JSON).

The audio is split at pauses (canary_triton.longform.segmenter; Silero VAD by default, on this instance's
CPU threads) into segments the model can take, audio without speech never being sent; the
segments go to the `canary_qwen` ensemble all at once through BLS, so they share its in-flight
batches; texts are joined in order. The streaming variant sends each segment's text as soon as it
and every earlier one are done. The work is in canary_triton.longform.transcribe; this adapts tensors.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from canary_triton import contract as C
from canary_triton.frontend.preprocess import validate_max_new_tokens
from canary_triton.longform.segment import Segment, segments_to_wire
from canary_triton.longform.segmenter import prepare
from canary_triton.longform.transcribe import (
    LongFormCancelled,
    LongFormOptions,
    TextJoiner,
    plan,
    timed,
    transcribe_in_order,
)
from canary_triton.model_params import LongFormParams
from canary_triton.runtime.loaders import export_mel_params
from canary_triton.triton_models.adapter import (
    CallerCancelled,
    artifacts_dir,
    first_string,
    read_params,
    scalar_array,
    unary_call,
)
from canary_triton.triton_models.base import ThreadedModel


class LongFormModel(ThreadedModel):
    def initialize(self, args):
        params = read_params(args, LongFormParams)
        self.streaming = self.pb.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))
        self.mel = export_mel_params(artifacts_dir(args, params))
        self.opts = LongFormOptions(max_seconds=params.max_seconds, segment=params.segment)
        prepare(self.opts.segment)
        self.target = params.segment_model
        self.segments = ThreadPoolExecutor(max_workers=params.segment_concurrency)
        self.start_workers(params)

    def serve(self, request, sender):
        try:
            self._transcribe(request, sender)
        except LongFormCancelled as e:
            raise CallerCancelled(str(e)) from e

    def _transcribe(self, request, sender):
        pb = self.pb
        audio, segments = plan(self.input(request, C.AUDIO.name), self.mel, self.opts)
        limit = self.input(request, C.MAX_NEW_TOKENS.name, optional=True)
        extra = (
            [] if limit is None else [pb.Tensor(C.MAX_NEW_TOKENS.name, scalar_array(validate_max_new_tokens(limit)))]
        )

        def one(chunk):
            out = unary_call(pb, self.target, [pb.Tensor(C.AUDIO.name, chunk[None])] + extra, [C.TRANSCRIPT.name])
            return first_string(out[C.TRANSCRIPT.name])

        joiner, done = TextJoiner(self.opts.max_overlap_words), []
        for seg, text in transcribe_in_order(
            audio, segments, one, self.segments, request.is_cancelled, self.opts.segment, self.mel.sample_rate
        ):
            piece = joiner.push(seg, text)
            done.append((seg, text))
            if self.streaming and piece:
                self.send(sender, self._outputs(piece, timed([(seg, text)], self.mel.sample_rate)), final=False)
        if self.streaming:
            self.send(sender)
        else:
            self.send(sender, self._outputs(joiner.text, timed(done, self.mel.sample_rate)))

    def _outputs(self, text: str, segments: list[Segment]):
        return [
            self.string_tensor(C.TRANSCRIPT.name, text),
            self.string_tensor(C.SEGMENTS.name, segments_to_wire(segments)),
        ]

    def finalize(self):
        super().finalize()
        self.segments.shutdown(wait=False, cancel_futures=True)

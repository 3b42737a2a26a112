"""Triton model `canary_qwen_stream` (decoupled, BLS): audio in -> partial transcripts as tokens come.

An ensemble may not route tensors around a decoupled step, and partial texts must be cut from the
whole token sequence (NeMo's decoding rule), so streaming is orchestrated here: preprocessor ->
encoder -> projector -> `llm` with streaming on; every few tokens the new stable text is sent, and
the pieces concatenate exactly to the unary ensemble's transcript. Same models, no second copy.
With the VAD gate on (export --vad-gate), a clip the preprocessor found no speech in gets "" at
once, without the LLM.
"""

from __future__ import annotations

from contextlib import closing

from canary_triton import contract as C
from canary_triton.longform.streaming import TranscriptStream
from canary_triton.model_params import StreamParams
from canary_triton.runtime.loaders import load_serving_tokenizer
from canary_triton.triton_models.adapter import artifacts_dir, callee_watch, forward_tokens, read_params, unary_call
from canary_triton.triton_models.base import ThreadedModel

PRE_OUT = [
    C.MEL.name,
    C.MEL_LENGTH.name,
    C.INPUT_IDS.name,
    C.INPUT_LENGTHS.name,
    C.REQUEST_OUTPUT_LEN.name,
    C.END_ID.name,
    C.PAD_ID.name,
]


class StreamModel(ThreadedModel):
    def initialize(self, args):
        params = read_params(args, StreamParams)
        self.tokenizer = load_serving_tokenizer(artifacts_dir(args, params))
        self.callee = callee_watch(args, C.LLM_MODEL)  # its stub's death ends the calls it had taken
        self.start_workers(params)

    def serve(self, request, sender):
        pb = self.pb
        inputs = [t for t in request.inputs() if t.name() in (C.AUDIO.name, C.MAX_NEW_TOKENS.name)]
        pre = unary_call(pb, C.PREPROCESSOR_MODEL, inputs, PRE_OUT)
        if int(pre[C.REQUEST_OUTPUT_LEN.name].as_numpy().reshape(-1)[0]) == C.NO_SPEECH_OUTPUT_LEN:
            self.send(sender, [self.string_tensor(C.TRANSCRIPT.name, "")])  # the VAD gate found no speech: no LLM call
            return
        enc = unary_call(pb, C.ENCODER_MODEL, [pre[C.MEL.name], pre[C.MEL_LENGTH.name]], [C.ENCODED.name])
        proj = unary_call(pb, C.PROJECTOR_MODEL, [enc[C.ENCODED.name]], [C.PROMPT_EMBEDDING_TABLE.name])
        llm_inputs = [pre[n] for n in PRE_OUT[2:]] + [proj[C.PROMPT_EMBEDDING_TABLE.name]]
        stream = TranscriptStream(self.tokenizer.decode)
        # closed on leaving the block: the forwarded request ends before any FINAL response (an error too)
        pieces = forward_tokens(pb, C.LLM_MODEL, llm_inputs, caller=sender, callee=self.callee)
        with closing(pieces):
            for tokens in pieces:
                delta = stream.push(tokens)
                if delta:
                    self.send(sender, [self.string_tensor(C.TRANSCRIPT.name, delta)], final=False)
        self.send(sender, [self.string_tensor(C.TRANSCRIPT.name, stream.finish())])

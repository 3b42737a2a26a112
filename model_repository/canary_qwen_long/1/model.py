"""Triton models `canary_qwen_long` (unary) and `canary_qwen_long_stream` (decoupled): audio of
any length up to the long-form limit -> transcript (+ segments as JSON).

The audio is split at pauses (canary_triton.segmenter; Silero VAD by default, on this instance's
CPU threads) into segments the model can take, audio without speech never being sent; the
segments go to the `canary_qwen` ensemble all at once through BLS, so they share its in-flight
batches; texts are joined in order. The streaming variant sends each segment's text as soon as it
and every earlier one are done. The work is in canary_triton.long_form; this adapts tensors.
"""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)

import json  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton import contract as C  # noqa: E402
from canary_triton.long_form import (  # noqa: E402
    LongFormCancelled, LongFormOptions, TextJoiner, plan, segments_json, transcribe_in_order,
)
from canary_triton.preprocess import validate_max_new_tokens  # noqa: E402
from canary_triton.segmenter import SegmentOptions, prepare  # noqa: E402
from canary_triton.serving import export_mel_params  # noqa: E402
from canary_triton.triton_adapter import (  # noqa: E402
    ThreadedModel, artifacts_dir, bls_error, input_array, model_parameters, unary_call,
)

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel(ThreadedModel):
    def initialize(self, args):
        params = model_parameters(args)
        self.streaming = pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))
        self.mel = export_mel_params(artifacts_dir(args, params))
        self.opts = LongFormOptions(max_seconds=float(params["max_seconds"]),
                                    segment=SegmentOptions.from_parameters(params))
        prepare(self.opts.segment)
        self.target = params.get("segment_model", C.ENSEMBLE_MODEL)
        self.segments = ThreadPoolExecutor(max_workers=int(params.get("segment_concurrency", "16")))
        self.start_workers(params)

    def _run(self, request):
        sender = request.get_response_sender()
        try:
            audio, segments = plan(input_array(pb_utils, request, C.AUDIO.name), self.mel, self.opts)
            limit = input_array(pb_utils, request, C.MAX_NEW_TOKENS.name, optional=True)
            extra = [] if limit is None else [
                pb_utils.Tensor(C.MAX_NEW_TOKENS.name, np.array([[validate_max_new_tokens(limit)]], dtype=np.int32))]

            def one(chunk):
                out = unary_call(pb_utils, self.target, [pb_utils.Tensor(C.AUDIO.name, chunk[None])] + extra,
                                 [C.TRANSCRIPT.name])
                return out[C.TRANSCRIPT.name].as_numpy().reshape(-1)[0].decode("utf-8")

            joiner, done = TextJoiner(self.opts.max_overlap_words), []
            for seg, text in transcribe_in_order(audio, segments, one, self.segments, request.is_cancelled,
                                                 self.opts.segment, self.mel.sample_rate):
                piece = joiner.push(seg, text)
                done.append((seg, text))
                if self.streaming and piece:
                    sender.send(_response(piece, segments_json([(seg, text)], self.mel.sample_rate)))
            if self.streaming:
                sender.send(flags=FINAL)
            else:
                sender.send(_response(joiner.text, segments_json(done, self.mel.sample_rate)), flags=FINAL)
        except LongFormCancelled as e:
            sender.send(bls_error(pb_utils, _cancelled(e)), flags=FINAL)
        except Exception as e:  # noqa: BLE001
            sender.send(bls_error(pb_utils, e), flags=FINAL)

    def finalize(self):
        super().finalize()
        self.segments.shutdown(wait=False, cancel_futures=True)


def _cancelled(e):
    from canary_triton.triton_adapter import CallerCancelled

    return CallerCancelled(str(e))


def _response(text, segments):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor(C.TRANSCRIPT.name, np.array([[text.encode("utf-8")]], dtype=np.object_)),
        pb_utils.Tensor(C.SEGMENTS.name, np.array([[segments.encode("utf-8")]], dtype=np.object_)),
    ])

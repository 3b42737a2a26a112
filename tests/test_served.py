"""The served pipeline on the real tritonserver (CPU profile) against the NeMo oracle."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from canary_triton import contract as C
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.errors import CanaryTritonError

from .conftest import speechlike


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_transcripts_equal_the_oracle(server_trained, oracle_trained, heldout, protocol):
    clips = [a for a, _ in heldout[:12]]
    want = oracle_trained.transcribe(clips)
    url = server_trained.grpc_url if protocol == "grpc" else server_trained.http_url
    got = [transcribe(c, ClientOptions(url=url, protocol=protocol)) for c in clips]
    assert got == want
    assert sum(g == t for g, (_, t) in zip(got, heldout[:12])) >= 10  # and they are mostly right


def _infer(client, model, arrays, outputs):
    inputs = []
    for name, arr in arrays.items():
        dtype = {np.float32: "FP32", np.int64: "INT64", np.int32: "INT32", np.bool_: "BOOL"}[arr.dtype.type]
        inputs.append(grpcclient.InferInput(name, list(arr.shape), dtype))
        inputs[-1].set_data_from_numpy(arr)
    r = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])
    return [r.as_numpy(o) for o in outputs]


@pytest.mark.parametrize("seconds", [0.5, 3.3, 12.0, 40.0])
def test_served_token_ids_equal_oracle_greedy_ids(server_random, oracle_random, seconds):
    clip = speechlike(seconds, seed=int(seconds * 10))
    want = oracle_random.run([clip], max_new_tokens=12).token_ids[0]
    c = grpcclient.InferenceServerClient(server_random.grpc_url)
    mel, mel_len, ids, n_ids, out_len, end_id = _infer(
        c, C.PREPROCESSOR_MODEL, {"audio": clip[None], "max_new_tokens": np.array([[12]], np.int32)},
        ["mel", "mel_length", "input_ids", "input_lengths", "request_output_len", "end_id"])
    (encoded,) = _infer(c, C.ENCODER_MODEL, {"mel": mel, "mel_length": mel_len}, ["encoded"])
    (table,) = _infer(c, C.PROJECTOR_MODEL, {"encoded": encoded}, ["prompt_embedding_table"])
    assert table.shape[1] == oracle_random.info.num_audio_frames(len(clip))
    out_ids, seq_len = _infer(c, C.LLM_UNARY_MODEL, {"input_ids": ids, "input_lengths": n_ids, "request_output_len": out_len,
                                              "end_id": end_id, "prompt_embedding_table": table},
                              ["output_ids", "sequence_length"])
    got = out_ids[0, 0, : int(seq_len[0, 0])].tolist()
    assert got == want


def test_concurrent_mixed_lengths_equal_single_results(server_trained, heldout):
    clips = [a for a, _ in heldout[:8]] + [np.concatenate([a, np.zeros(8000, np.float32), b])
                                           for (a, _), (b, _) in zip(heldout[8:16], heldout[16:24])]
    opts = ClientOptions(url=server_trained.grpc_url)
    single = [transcribe(c, opts) for c in clips]
    stats_before = _stats(server_trained)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda c: transcribe(c, opts), clips * 2))
    assert together == single * 2
    stats = _stats(server_trained)
    # Dynamic batching formed batches larger than one (fewer executions than inferences).
    for model in (C.ENCODER_MODEL, C.LLM_UNARY_MODEL, C.LLM_MODEL):
        inferences = stats[model][0] - stats_before[model][0]
        executions = stats[model][1] - stats_before[model][1]
        assert inferences == len(clips) * 2 and executions < inferences, (model, inferences, executions)


def _stats(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    out = {}
    for s in c.get_inference_statistics(as_json=True)["model_stats"]:
        out[s["name"]] = (int(s.get("inference_count", 0)), int(s.get("execution_count", 0)))
    return out


def test_short_requests_are_not_held_behind_a_long_one(server_random):
    """In-flight batching: requests that arrive later but need fewer tokens finish first. The
    shorts are sent once the long one has streamed its first token (an event, not a delay)."""
    import queue

    want = {"long": C.MAX_NEW_TOKENS_LIMIT, **{f"short{i}": 3 for i in range(3)}}
    counts = {name: 0 for name in want}
    done_order: list[str] = []
    long_started, all_done = threading.Event(), threading.Event()
    errors: "queue.Queue" = queue.Queue()

    def on_response(result, error):
        if error is not None:
            errors.put(error)
            all_done.set()
            return
        name = result.get_response().id
        counts[name] += int(result.as_numpy(C.OUTPUT_IDS.name).shape[-1])
        if name == "long":
            long_started.set()
        if counts[name] == want[name]:
            done_order.append(name)
            if len(done_order) == len(want):
                all_done.set()

    def send(client, name):
        arrays = {"input_ids": np.array([[5, 6, 7, 8]], np.int32), "input_lengths": np.array([[4]], np.int32),
                  "request_output_len": np.array([[want[name]]], np.int32), "end_id": np.array([[-1]], np.int32),
                  "streaming": np.array([[True]], np.bool_)}
        inputs = []
        for k, arr in arrays.items():
            dtype = {np.int32: "INT32", np.bool_: "BOOL"}[arr.dtype.type]
            inputs.append(grpcclient.InferInput(k, list(arr.shape), dtype))
            inputs[-1].set_data_from_numpy(arr)
        client.async_stream_infer(C.LLM_MODEL, inputs, request_id=name)

    client = grpcclient.InferenceServerClient(server_random.grpc_url)
    client.start_stream(callback=on_response)
    try:
        send(client, "long")
        assert long_started.wait(120)
        for i in range(3):
            send(client, f"short{i}")
        assert all_done.wait(300) and errors.empty(), list(errors.queue)
    finally:
        client.stop_stream()
    assert done_order[-1] == "long" and sorted(done_order[:-1]) == ["short0", "short1", "short2"], done_order


BAD_AUDIO = [
    (np.zeros((1, 0), np.float32), "audio' has 0 samples; at least 160"),
    (np.zeros((1, 5), np.float32), "at least 160"),
    (np.zeros((1, 16000 * 41), np.float32), "the limit is 40 s"),
    (np.array([[0.1, np.nan] * 800], np.float32), "NaN or Inf"),
    (np.array([[0.1, np.inf] * 800], np.float32), "NaN or Inf"),
    (np.full((1, 1600), 1e6, np.float32), "within +-64"),
]


@pytest.mark.parametrize("audio,message", BAD_AUDIO)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_audio_is_refused_with_a_clear_message(server_trained, audio, message, protocol):
    url = server_trained.grpc_url if protocol == "grpc" else server_trained.http_url
    with pytest.raises(CanaryTritonError, match=message.replace("+", r"\+")):
        transcribe(audio, ClientOptions(url=url, protocol=protocol), long_form=False)  # the ensemble itself
    assert httpclient.InferenceServerClient(server_trained.http_url).is_server_ready()


@pytest.mark.parametrize("value", [0, 513, -3])
def test_max_new_tokens_out_of_range(server_trained, heldout, value):
    with pytest.raises(CanaryTritonError, match=f"'max_new_tokens' is {value}; it must be between 1 and 512"):
        transcribe(heldout[0][0], ClientOptions(url=server_trained.grpc_url), max_new_tokens=value)


def test_wrong_dtype_and_rank_are_refused(server_trained):
    c = httpclient.InferenceServerClient(server_trained.http_url)
    x = np.zeros((1, 1600), np.float64)
    i = httpclient.InferInput("audio", list(x.shape), "FP64")
    i.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="audio"):
        c.infer(C.ENSEMBLE_MODEL, [i])
    x = np.zeros((1, 2, 1600), np.float32)
    i = httpclient.InferInput("audio", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="audio"):
        c.infer(C.ENSEMBLE_MODEL, [i])
    assert c.is_server_ready()


def test_a_bad_request_in_a_batch_does_not_hurt_the_others(server_trained, heldout):
    opts = ClientOptions(url=server_trained.grpc_url)
    good = [a for a, _ in heldout[:6]]
    want = [transcribe(a, opts) for a in good]
    jobs = good[:3] + [np.zeros(3, np.float32)] + good[3:]

    def run(a):
        try:
            return transcribe(a, opts)
        except CanaryTritonError as e:
            return e

    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(run, jobs))
    assert isinstance(got[3], CanaryTritonError)
    assert got[:3] + got[4:] == want


def _stream(server, audio, max_new_tokens=None):
    """Partial transcripts from canary_qwen_stream over the gRPC streaming API, in arrival order."""
    import queue

    results: "queue.Queue" = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    x = np.asarray(audio, dtype=np.float32)[None]
    inputs = [grpcclient.InferInput("audio", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    if max_new_tokens is not None:
        inputs.append(grpcclient.InferInput("max_new_tokens", [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(np.array([[max_new_tokens]], np.int32))
    client.async_stream_infer(C.STREAM_MODEL, inputs, request_id="s1", enable_empty_final_response=True)
    pieces = []
    while True:
        result, error = results.get(timeout=120)
        if error is not None:
            client.stop_stream()
            raise error
        response = result.get_response()
        if response.outputs:
            pieces.append(result.as_numpy("transcript").reshape(-1)[0].decode())
        if response.parameters.get("triton_final_response") and response.parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    return pieces


def test_streaming_pieces_concatenate_to_the_unary_transcript(server_trained, heldout):
    opts = ClientOptions(url=server_trained.grpc_url)
    for audio, _ in heldout[:4]:
        pieces = _stream(server_trained, audio)
        assert len(pieces) >= 2  # text arrived before the end, then the final piece
        assert "".join(pieces) == transcribe(audio, opts)


def test_streaming_refuses_bad_audio_with_the_same_message(server_trained):
    with pytest.raises(InferenceServerException, match="at least 160"):
        _stream(server_trained, np.zeros(5, np.float32))
    assert httpclient.InferenceServerClient(server_trained.http_url).is_server_ready()

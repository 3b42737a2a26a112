"""The served pipeline on the real tritonserver (CPU profile) against the NeMo oracle."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from canary_triton import contract as C
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.errors import CanaryTritonError

from .conftest import LONG_GENERATION_TOKENS, speechlike


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
        c,
        C.PREPROCESSOR_MODEL,
        {"audio": clip[None], "max_new_tokens": np.array([[12]], np.int32)},
        ["mel", "mel_length", "input_ids", "input_lengths", "request_output_len", "end_id"],
    )
    assert mel.shape[2] == C.bucketed_columns(
        C.mel_columns(len(clip)), C.mel_bucket_columns(C.DEFAULT_MEL_BUCKET_SECONDS)
    )
    (encoded,) = _infer(c, C.ENCODER_MODEL, {"mel": mel, "mel_length": mel_len}, ["encoded"])
    (table,) = _infer(c, C.PROJECTOR_MODEL, {"encoded": encoded}, ["prompt_embedding_table"])
    assert table.shape[1] == oracle_random.info.num_audio_frames(len(clip))
    out_ids, seq_len = _infer(
        c,
        C.LLM_UNARY_MODEL,
        {
            "input_ids": ids,
            "input_lengths": n_ids,
            "request_output_len": out_len,
            "end_id": end_id,
            "prompt_embedding_table": table,
        },
        ["output_ids", "sequence_length"],
    )
    got = out_ids[0, 0, : int(seq_len[0, 0])].tolist()
    assert got == want


def test_concurrent_mixed_lengths_equal_single_results(server_trained, heldout):
    clips = [a for a, _ in heldout[:8]] + [
        np.concatenate([a, np.zeros(8000, np.float32), b]) for (a, _), (b, _) in zip(heldout[8:16], heldout[16:24])
    ]
    opts = ClientOptions(url=server_trained.grpc_url)
    single = [transcribe(c, opts) for c in clips]
    batched: set[str] = set()
    # Dynamic batching forms a batch larger than one when requests queue while a model is busy:
    # how often that happens depends on the machine, so rounds of 32 concurrent requests go on
    # until every batched model has shown one (each round also checks the transcripts).
    for _ in range(_MAX_ROUNDS):
        before = _stats(server_trained)
        with ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda c: transcribe(c, opts), clips * 2))
        assert together == single * 2
        after = _stats(server_trained)
        for model in _BATCHED_MODELS:
            inferences = after[model][0] - before[model][0]
            executions = after[model][1] - before[model][1]
            assert inferences == len(clips) * 2, (model, inferences)
            if executions < inferences:
                batched.add(model)
        if batched == set(_BATCHED_MODELS):
            break
    assert batched == set(_BATCHED_MODELS), (
        f"no batch > 1 formed in {_MAX_ROUNDS} rounds for {sorted(set(_BATCHED_MODELS) - batched)}"
    )


_BATCHED_MODELS = (C.ENCODER_MODEL, C.LLM_UNARY_MODEL, C.LLM_MODEL)
_MAX_ROUNDS = 10


def _stats(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    out = {}
    for s in c.get_inference_statistics(as_json=True)["model_stats"]:
        out[s["name"]] = (int(s.get("inference_count", 0)), int(s.get("execution_count", 0)))
    return out


def _llm_inputs(n_tokens: int, streaming: bool):
    arrays = {
        "input_ids": np.array([[5, 6, 7, 8]], np.int32),
        "input_lengths": np.array([[4]], np.int32),
        "request_output_len": np.array([[n_tokens]], np.int32),
        "end_id": np.array([[-1]], np.int32),
        "streaming": np.array([[streaming]], np.bool_),
    }
    inputs = []
    for name, arr in arrays.items():
        inputs.append(grpcclient.InferInput(name, list(arr.shape), "BOOL" if arr.dtype == np.bool_ else "INT32"))
        inputs[-1].set_data_from_numpy(arr)
    return inputs


def _is_final(result) -> bool:
    final = result.get_response().parameters.get("triton_final_response")
    return final is not None and final.bool_param


def _encoder_batches(client) -> dict[int, int]:
    (s,) = client.get_inference_statistics(C.ENCODER_MODEL, as_json=True)["model_stats"]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s.get("batch_stats", [])}


def _mel_inputs(mel: np.ndarray, length: int) -> list:
    inputs = [
        grpcclient.InferInput(C.MEL.name, list(mel.shape), "FP32"),
        grpcclient.InferInput(C.MEL_LENGTH.name, [1, 1], "INT64"),
    ]
    inputs[0].set_data_from_numpy(mel)
    inputs[1].set_data_from_numpy(np.array([[length]], dtype=np.int64))
    return inputs


def _grown_encoder_batches(client, before: dict[int, int], probe: list) -> dict[int, int]:
    """Encoder executions by batch size since ``before``. Triton records an execution's
    statistics after its responses are sent, on the instance's own thread, before that instance
    takes its next batch; so once one more (synchronous) request to the single encoder instance
    has been answered, every earlier execution is counted (an ordering, not a wait)."""
    (group,) = client.get_model_config(C.ENCODER_MODEL, as_json=True)["config"]["instance_group"]
    assert int(group["count"]) == 1, group  # the ordering argument above needs one instance
    client.infer(C.ENCODER_MODEL, probe)
    after = _encoder_batches(client)
    return {b: after[b] - before.get(b, 0) for b in after if after[b] > before.get(b, 0)}


def test_the_encoder_batches_concurrent_clips_of_one_bucket(server_random):
    """Clips of different lengths in one mel bucket have equal shapes (mel is not ragged, as for a
    TensorRT plan), so Triton's dynamic batcher groups them: the statistics show batches > 1.
    Rounds of 32 concurrent requests until a batch > 1 appears (a condition, not a timing)."""
    c = grpcclient.InferenceServerClient(server_random.grpc_url)
    bucket = C.mel_bucket_columns(C.DEFAULT_MEL_BUCKET_SECONDS)
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(bucket + 1, 2 * bucket, size=32)]  # all in the 2nd bucket
    before = _encoder_batches(c)
    probe = _mel_inputs(rng.standard_normal((1, 128, 2 * bucket)).astype(np.float32), bucket + 1)
    for _ in range(10):
        done = threading.Semaphore(0)
        results: list = []

        def callback(result, error):
            results.append((result, error))
            done.release()

        for n in lengths:
            mel = rng.standard_normal((1, 128, 2 * bucket)).astype(np.float32)
            c.async_infer(C.ENCODER_MODEL, _mel_inputs(mel, n), callback)
        for _ in lengths:
            assert done.acquire(timeout=120)
        assert all(err is None for _, err in results), [e for _, e in results if e is not None][:1]
        got = sorted(int(r.as_numpy(C.ENCODED_LENGTH.name).reshape(-1)[0]) for r, _ in results)
        assert got == sorted(C.num_encoder_frames(n) for n in lengths)
        grown = _grown_encoder_batches(c, before, probe)
        if any(b > 1 for b in grown):
            break
    assert any(b > 1 for b in grown), grown
    assert sum(b * n for b, n in grown.items()) >= len(lengths)


def test_short_requests_are_not_held_behind_a_long_one(server_random):
    """In-flight batching, driven by events: the long request streams from the decoupled ``llm``
    (end id -1, LONG_GENERATION_TOKENS, the most its export allows); the short ones are sent once
    its first tokens have arrived and must all finish while it is still generating (a batcher that
    ran requests one after another, or a batch to its end, would finish the long one first)."""
    long_events: "queue.Queue" = queue.Queue()
    short_events: "queue.Queue" = queue.Queue()
    long_client = grpcclient.InferenceServerClient(server_random.grpc_url)
    short_client = grpcclient.InferenceServerClient(server_random.grpc_url)
    long_client.start_stream(callback=lambda result, error: long_events.put((result, error)))
    short_client.start_stream(callback=lambda result, error: short_events.put((result, error)))
    long_tokens = 0
    long_done = False

    def drain_long(block: bool) -> None:
        nonlocal long_tokens, long_done
        while True:
            try:
                result, error = long_events.get(timeout=300) if block else long_events.get_nowait()
            except queue.Empty:
                assert not block, "the long request sent nothing for 300 s"
                return
            assert error is None, error
            if result.get_response().outputs:
                long_tokens += result.as_numpy("output_ids").shape[-1]
            long_done = long_done or _is_final(result)
            if block:
                return

    try:
        long_client.async_stream_infer(
            C.LLM_MODEL,
            _llm_inputs(LONG_GENERATION_TOKENS, streaming=True),
            request_id="long",
            enable_empty_final_response=True,
        )
        while long_tokens < 2:  # it is generating
            drain_long(block=True)
        for i in range(3):
            short_client.async_stream_infer(
                C.LLM_MODEL, _llm_inputs(3, streaming=False), request_id=f"short{i}", enable_empty_final_response=True
            )
        finished = []
        while len(finished) < 3:
            result, error = short_events.get(timeout=120)
            assert error is None, error
            if _is_final(result):
                drain_long(block=False)  # everything the long request had sent by now
                finished.append((result.get_response().id, long_done, long_tokens))
        assert sorted(f[0] for f in finished) == ["short0", "short1", "short2"]
        assert not any(done for _, done, _ in finished), finished
        assert all(n < LONG_GENERATION_TOKENS for _, _, n in finished), finished
    finally:
        long_client.stop_stream(cancel_requests=True)
        short_client.stop_stream()


def test_the_llm_refuses_more_tokens_than_its_export_allows_naming_the_limit(server_random):
    c = grpcclient.InferenceServerClient(server_random.grpc_url)
    ids = np.array([[5, 6, 7, 8]], np.int32)
    arrays = {"input_ids": ids, "input_lengths": np.array([[4]], np.int32), "end_id": np.array([[-1]], np.int32)}
    with pytest.raises(InferenceServerException, match=f"between 1 and {LONG_GENERATION_TOKENS}"):
        _infer(
            c,
            C.LLM_UNARY_MODEL,
            {**arrays, "request_output_len": np.array([[LONG_GENERATION_TOKENS + 1]], np.int32)},
            ["output_ids"],
        )
    (out,) = _infer(c, C.LLM_UNARY_MODEL, {**arrays, "request_output_len": np.array([[3]], np.int32)}, ["output_ids"])
    assert out.shape[-1] == 3


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

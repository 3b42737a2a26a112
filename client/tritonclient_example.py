"""Transcribe a file with nothing but ``tritonclient``: the wire contract of the served entry
points, for an application that does not use ``canary_triton.client``.

    python client/tritonclient_example.py clip.wav [--url 127.0.0.1:8001] [--stream]

Unary: ``canary_qwen`` takes ``audio`` (FP32 [1, samples], 16 kHz mono) and an optional
``max_new_tokens`` (INT32 [1, 1]) and answers ``transcript`` (BYTES [1, 1]). Streaming:
``canary_qwen_stream`` (decoupled, gRPC streams only) answers partial ``transcript`` pieces that
concatenate to the unary transcript; the last response carries Triton's
``triton_final_response`` flag. Errors come back with Triton's status (``INVALID_ARG`` names the
input and its limit). Needs ``tritonclient[grpc]``, ``numpy`` and ``soundfile``; the audio is
averaged to mono and must already be 16 kHz (``canary_triton.client`` resamples any rate).
"""

from __future__ import annotations

import argparse
import queue
import sys

import numpy as np
import soundfile
import tritonclient.grpc as grpcclient

SAMPLE_RATE = 16000


def read_audio(path: str) -> np.ndarray:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"error: {path} is {rate} Hz; this example sends 16 kHz audio only")
    return samples.mean(axis=1)


def request_inputs(samples: np.ndarray, max_new_tokens: int | None) -> list:
    audio = grpcclient.InferInput("audio", [1, len(samples)], "FP32")
    audio.set_data_from_numpy(samples[None, :].astype(np.float32))
    inputs = [audio]
    if max_new_tokens is not None:
        limit = grpcclient.InferInput("max_new_tokens", [1, 1], "INT32")
        limit.set_data_from_numpy(np.array([[max_new_tokens]], np.int32))
        inputs.append(limit)
    return inputs


def transcribe(url: str, samples: np.ndarray, max_new_tokens: int | None = None) -> str:
    with grpcclient.InferenceServerClient(url) as client:
        result = client.infer("canary_qwen", request_inputs(samples, max_new_tokens), client_timeout=120)
    return result.as_numpy("transcript").reshape(-1)[0].decode("utf-8")


def stream(url: str, samples: np.ndarray, max_new_tokens: int | None = None):
    """Yield the partial transcripts of one streamed request as they come."""
    responses: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: responses.put((result, error)), stream_timeout=120)
    try:
        client.async_stream_infer(
            "canary_qwen_stream", request_inputs(samples, max_new_tokens), enable_empty_final_response=True
        )
        while True:
            result, error = responses.get(timeout=120)
            if error is not None:
                raise RuntimeError(f"{error.status()}: {error.message()}")
            response = result.get_response()
            if "transcript" in {o.name for o in response.outputs}:
                yield result.as_numpy("transcript").reshape(-1)[0].decode("utf-8")
            if response.parameters["triton_final_response"].bool_param:
                return
    finally:
        client.stop_stream()
        client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio")
    ap.add_argument("--url", default="127.0.0.1:8001", help="Triton's gRPC endpoint")
    ap.add_argument("--stream", action="store_true", help="partial transcripts as they come (canary_qwen_stream)")
    ap.add_argument("--max-new-tokens", type=int)
    a = ap.parse_args(argv)
    samples = read_audio(a.audio)
    if a.stream:
        for piece in stream(a.url, samples, a.max_new_tokens):
            print(piece, end="", flush=True)
        print()
    else:
        print(transcribe(a.url, samples, a.max_new_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())

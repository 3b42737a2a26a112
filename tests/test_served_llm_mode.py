"""LLM mode served: the base Qwen3 (adapter disabled) against NeMo, sampling, bad text input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from canary_triton import contract as C
from canary_triton.client import CanaryClient, ServerError
from canary_triton.client.transcribe import ClientOptions, ask, transcribe
from canary_triton.errors import CanaryTritonError

TEXTS = ["Summarize: one two three four", "what is the weather", "turn on the light please"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_llm_mode_equals_nemo_with_the_adapter_disabled(server_random, oracle_random, protocol):
    url = server_random.grpc_url if protocol == "grpc" else server_random.http_url
    want = [oracle_random.decode(ids) for ids in oracle_random.llm_generate(TEXTS, max_new_tokens=10)]
    got = [ask(t, ClientOptions(url=url, protocol=protocol), max_new_tokens=10) for t in TEXTS]
    assert got == want


def test_asr_and_llm_requests_interleaved(server_trained, heldout):
    # tiny-trained: its transcripts are robust to the ~1e-6 differences batching makes in the
    # encoder (tiny-random's exaggerated weights turn those into other tokens).
    opts = ClientOptions(url=server_trained.grpc_url)
    clips = [a for a, _ in heldout[:4]]
    asr_alone = [transcribe(c, opts, max_new_tokens=12) for c in clips]
    llm_alone = [ask(t, opts, max_new_tokens=10) for t in TEXTS]
    jobs = [("asr", c) for c in clips] + [("llm", t) for t in TEXTS]
    jobs = jobs[::2] + jobs[1::2]

    def run(job):
        kind, x = job
        return transcribe(x, opts, max_new_tokens=12) if kind == "asr" else ask(x, opts, max_new_tokens=10)

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = dict(zip([id(j) for j in jobs], pool.map(run, jobs)))
    assert [together[id(j)] for j in jobs if j[0] == "asr"] == [asr_alone[i] for i in (0, 2, 1, 3)]
    assert [together[id(j)] for j in jobs if j[0] == "llm"] == [llm_alone[i] for i in (0, 2, 1)]


def test_sampling_is_reproducible_with_a_seed(server_random):
    opts = ClientOptions(url=server_random.grpc_url)
    a = ask(TEXTS[0], opts, max_new_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    b = ask(TEXTS[0], opts, max_new_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    assert a == b


@pytest.mark.parametrize(
    "text,kwargs,message",
    [
        ("say <|audioplaceholder|>", {}, "may not contain <|audioplaceholder|>"),
        ("   ", {}, "'text_input' is empty"),
        (b"\xff\xfe bad", {}, "not valid UTF-8"),
        ("x" * (64 * 1024 + 1), {}, "the limit is 65536"),
        ("one two " * 700, {}, "the limit is 1024"),
        ("hello", {"temperature": 5.0}, "'temperature' is 5; it must be between 0"),
        ("hello", {"temperature": 0.5, "top_p": 0.0}, "'top_p' is 0; it must be in (0, 1]"),
        ("hello", {"max_new_tokens": 0}, "'max_new_tokens' is 0"),
    ],
)
def test_bad_llm_mode_input(server_random, text, kwargs, message):
    with pytest.raises(CanaryTritonError, match=message.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")):
        ask(text, ClientOptions(url=server_random.grpc_url), **kwargs)


def test_audio_and_instruction_in_one_call_equals_the_two_calls(server_trained, heldout):
    audio = heldout[2][0]
    long_audio = np.concatenate([np.concatenate([a, np.zeros(8000, np.float32)]) for a, _ in heldout[:25]])
    assert len(long_audio) > C.MAX_AUDIO_SECONDS * 16000
    with CanaryClient(server_trained.grpc_url) as c:
        for clip in (audio, long_audio):
            transcript, answer = c.transcribe_and_ask(clip, "Repeat the text.", max_new_tokens=6)
            assert transcript == c.transcribe(clip)
            assert answer == c.ask("Repeat the text.", transcript, max_new_tokens=6)
        for bad, message in ((np.zeros(5, np.float32), "at least 160"), (np.full(1600, np.nan, np.float32), "NaN")):
            with pytest.raises(ServerError, match=message) as e:
                c.transcribe_and_ask(bad, "Repeat.")
            assert "INVALID_ARG" in e.value.status
        with pytest.raises(ServerError, match="instruction.*is empty"):
            c.transcribe_and_ask(audio, "   ")


def _mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}


def test_asr_and_llm_mode_map_one_copy_of_the_llm_weights(server_trained, exported_trained, heldout):
    """The CPU default (--cpu-llm-weights shared): llm (ASR, run-time adapter) and llm_base (LLM
    mode) map the same base weights file, so its pages are in memory once; neither maps the
    merged copy. Checked after both modes ran (pages become resident as they are read)."""
    opts = ClientOptions(url=server_trained.grpc_url)
    assert transcribe(heldout[0][0], opts, max_new_tokens=8)
    ask(TEXTS[0], opts, max_new_tokens=4)  # tiny-trained's base model may answer "" (EOS first): it ran
    stubs = server_trained.stub_pids()
    base = str((exported_trained / "llm_base" / "model.safetensors").resolve())
    merged = str((exported_trained / "llm_merged").resolve())
    for model in (C.LLM_MODEL, C.LLM_BASE_MODEL):
        assert stubs.get(model), f"no stub process found for {model}: {stubs}"
        for pid in stubs[model]:
            files = _mapped_files(pid)
            assert base in files, f"{model} does not map {base}"
            assert not any(f.startswith(merged + "/") for f in files), f"{model} maps the merged copy"
    adapter = str((exported_trained / "llm_base" / "asr_adapter.safetensors").resolve())
    assert all(adapter in _mapped_files(pid) for pid in stubs[C.LLM_MODEL])
    assert not any(adapter in _mapped_files(pid) for pid in stubs[C.LLM_BASE_MODEL])

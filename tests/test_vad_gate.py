"""The short-form VAD gate (export --vad-gate): a clip with no speech gives "" through the unary
ensemble and the streaming entry point without the LLM running; speech is transcribed as
without the gate. Off by default (exact NeMo parity), so the session's servers do not have it:
this module serves a gated repository generated over the tiny-trained export's artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._common import model_statistics
from canary_triton import contract as C
from canary_triton.artifacts import ExportManifest
from canary_triton.client import CanaryClient, ClientOptions
from canary_triton.evaluation.wer import wer
from canary_triton.export.repository import REPOSITORY_DIR, RepositoryOptions, write_repository
from canary_triton.fixtures import noise

from .conftest import SR, TINY_LONG_FORM_MERGE_S, _served


@pytest.fixture(scope="module")
def gated_server(exported_trained, tmp_path_factory):
    export = tmp_path_factory.mktemp("gated-export")
    for item in exported_trained.iterdir():  # the same artifacts, a repository of its own
        if item.name != REPOSITORY_DIR:
            (export / item.name).symlink_to(item)
    write_repository(export, "cpu", RepositoryOptions(vad_gate=True, long_form_merge_s=TINY_LONG_FORM_MERGE_S))
    server = _served(export, tmp_path_factory.mktemp("triton-gated"))
    try:
        server.start(timeout_s=900)  # a second server while the session's run: slow on a loaded machine
        yield server, export
    finally:
        server.stop()


def _llm_requests(url: str) -> int:
    return model_statistics(url)[C.LLM_MODEL]["inference_count"]


def test_the_gate_is_off_by_default_and_rendered_when_on(exported_trained, gated_server):
    _, export = gated_server
    for model in (C.PREPROCESSOR_MODEL, C.LLM_UNARY_MODEL):
        assert (
            '"vad_gate" value: { string_value: "false" }'
            in (exported_trained / "model_repository" / model / "config.pbtxt").read_text()
        )
        assert (
            '"vad_gate" value: { string_value: "true" }'
            in (export / "model_repository" / model / "config.pbtxt").read_text()
        )
    assert ExportManifest.read(exported_trained).options.vad_gate is False


def test_no_speech_gives_empty_text_without_running_the_llm(gated_server):
    server, _ = gated_server
    clips = [
        noise.pink_noise(5, seed=1),
        noise.synthetic_music(5, seed=1),
        noise.near_silence_with_clicks(5, seed=1),
        np.zeros(3 * SR, np.float32),
    ]
    with CanaryClient(options=ClientOptions(url=server.grpc_url, timeout_s=300)) as c:
        c.transcribe(np.zeros(SR, np.float32))  # warm-up (no speech either)
        before = _llm_requests(server.grpc_url)
        assert [c.transcribe(x) for x in clips] == [""] * len(clips)
        assert ["".join(c.stream(x)) for x in clips] == [""] * len(clips)
        assert _llm_requests(server.grpc_url) == before


def test_speech_is_still_transcribed(gated_server, heldout):
    """Speech passes the gate: the LLM runs for each clip (unary and streamed) and the text is right."""
    server, _ = gated_server
    clips = heldout[:6]
    with CanaryClient(options=ClientOptions(url=server.grpc_url, timeout_s=300)) as c:
        before = _llm_requests(server.grpc_url)
        got = [c.transcribe(a) for a, _ in clips]
        assert ["".join(c.stream(a)) for a, _ in clips] == got
        assert _llm_requests(server.grpc_url) == before + 2 * len(clips)
    assert wer([t for _, t in clips], got) <= 0.10, got

"""Shared fixtures: one pytest session builds tiny-random once and loads each oracle once."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from canary_triton.bundled import DEMO_CHECKPOINT, DEMO_HELDOUT  # noqa: E402
from canary_triton.checkpoint.oracle import Oracle  # noqa: E402
from canary_triton.cli import main  # noqa: E402
from canary_triton.evaluation.nemo_manifest import read_manifest  # noqa: E402
from canary_triton.export.options import ExportOptions  # noqa: E402
from canary_triton.export.pipeline import export_checkpoint  # noqa: E402
from canary_triton.export.repository import RepositoryOptions  # noqa: E402
from canary_triton.export.trtllm_engine import LlmEngineOptions  # noqa: E402
from canary_triton.fixtures.tiny import TINY_LONG_FORM_MERGE_S, make_tiny_random  # noqa: E402
from canary_triton.frontend.audio import load_audio  # noqa: E402
from canary_triton.serving.tritonserver import ServerOptions, TritonServer, free_port  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SR = 16000


# -- the `served` marker ---------------------------------------------------------------------
# `pytest -m "not served"` runs what needs no tritonserver. A test is marked `served` here, at
# collection, when any fixture it depends on (directly or through other fixtures) starts a server:
# by convention such a fixture is named `server_*` or `*_server` (server_trained, server_random,
# strict_server, gated_server). A test that starts a server itself (TritonServer(...).start() in
# the test, or `canary-triton serve`/`demo`/an entrypoint in a subprocess) carries
# @pytest.mark.served explicitly; one that starts TritonServer in this process without the mark
# fails (see _refuse_unmarked_server_start below), so the marker cannot be forgotten there.


def starts_a_server(fixture_name: str) -> bool:
    """Whether the fixture ``fixture_name`` starts a tritonserver (the naming convention)."""
    return fixture_name.startswith("server_") or fixture_name.endswith("_server")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(starts_a_server(name) for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.served)


_running: list = []  # the test item being set up / run / torn down


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _running[:] = [item]


_started: list = []  # every TritonServer started in this session (its stacks go with a failure)


def _refuse_unmarked_server_start(start):
    def guarded(self, *args, **kwargs):
        item = _running[0] if _running else None
        if item is not None and item.get_closest_marker("served") is None:
            raise RuntimeError(
                f"{item.nodeid} starts a tritonserver but is not marked `served`: add "
                f"@pytest.mark.served, or take the server from a `server_*` fixture"
            )
        _started.append(self)
        return start(self, *args, **kwargs)

    guarded.__wrapped__ = start
    return guarded


# -- the cyclic garbage collector --------------------------------------------------------------
# torch, transformers and NeMo leave about 750,000 long-lived objects that every full collection
# walks (about 0.5 s each; the export calls gc.collect() three times, and the automatic full
# collections add about 30 more per session: 10 s of the `not served` run). What lives the whole
# session (imported modules, session fixtures' values) is moved to the collector's permanent
# generation once it exists; everything made later is collected as before (a frozen object is
# still freed when its last reference goes).


class _FreezeWhatLivesTheSession:
    """A plugin (registered in pytest_configure: a session fixture is set up through the session's
    hooks, which a conftest below the root does not receive)."""

    @staticmethod
    def freeze() -> None:
        gc.collect()
        gc.freeze()

    def pytest_collection_finish(self, session):
        self.freeze()  # the test modules' imports

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        value = yield
        if fixturedef.scope == "session":
            self.freeze()  # its value, and what its first use imported (NeMo)
        return value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A served test that failed carries what every running server's models were doing (their
    threads' Python stacks): the evidence of a server that stopped answering."""
    report = yield
    if report.when == "call" and report.failed and item.get_closest_marker("served") is not None:
        for server in _started:
            name = server.log_path.parent.name if server.log_path else "?"
            for model, text in server.dump_stacks().items():
                report.sections.append((f"stacks of {model} ({name})", text[-6000:]))
    return report


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("canary-gc-freeze"):
        config.pluginmanager.register(_FreezeWhatLivesTheSession(), "canary-gc-freeze")

    if not hasattr(TritonServer.start, "__wrapped__"):
        TritonServer.start = _refuse_unmarked_server_start(TritonServer.start)


@pytest.fixture(scope="session")
def tiny_random_dir(tmp_path_factory) -> Path:
    return make_tiny_random(tmp_path_factory.mktemp("ckpt") / "tiny-random", seed=1234)


@pytest.fixture(scope="session")
def tiny_trained_dir() -> Path:
    assert (DEMO_CHECKPOINT / "model.safetensors").is_file(), "the committed tiny-trained checkpoint is missing"
    return DEMO_CHECKPOINT


@pytest.fixture(scope="session")
def oracle_random(tiny_random_dir):
    return Oracle.from_checkpoint(tiny_random_dir)


@pytest.fixture(scope="session")
def oracle_trained(tiny_trained_dir):
    return Oracle.from_checkpoint(tiny_trained_dir)


@pytest.fixture(scope="session")
def heldout():
    """The committed held-out renditions of the tiny-trained speech set: (audio, text) pairs."""
    rows = read_manifest(DEMO_HELDOUT / "manifest.jsonl")
    return [(load_audio(r["audio_filepath"], SR), r["text"]) for r in rows]


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """A deterministic test clip: harmonic tones with an envelope plus noise (not silence)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    f0 = 100 + 80 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6.28) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (1 + 3 * rng.random()) * t)
    return (0.1 * x * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


def cli_in_process(*argv: str) -> subprocess.CompletedProcess:
    """``canary-triton *argv`` run in this process, as a finished subprocess would report it
    (exit code, stdout, stderr). What a subprocess proves about a one-line error (exit 2, one
    ``error:`` line, nothing written) it proves too, without a fresh interpreter importing torch and
    NeMo again (about 5 s each); an unexpected exception fails the test with its traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse's own errors
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["canary-triton", *argv], code, out.getvalue(), err.getvalue())


#: How long a test server may take to load before the test fails: a bound against a hang, not a
#: speed target (about 30 s on an idle 2-core machine; far more while other work loads it).
SERVER_START_TIMEOUT_S = 900.0


def _served(export_dir: Path, tmp: Path):
    opts = ServerOptions(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), exit_timeout_s=10)
    return TritonServer(export_dir / "model_repository", opts, workdir=tmp, log_path=tmp / "tritonserver.log")


#: tiny-random's export lets one llm / LLM-mode request generate this many tokens (its engines'
#: max_new_tokens; tiny-random never emits EOS), so a "long" request in the in-flight and
#: cancellation tests outlasts any cancel path or short request by thousands of steps.
LONG_GENERATION_TOKENS = 8192


def _export(checkpoint: Path, out: Path, **llm_engine) -> Path:
    # fp32: the token-equality tests against NeMo fp32 must not depend on the CI machine's CPU
    # (auto would pick bf16 where it has bf16 units); one thread per model: the tiny models only
    # lose from more on a shared machine.
    repo = RepositoryOptions(long_form_merge_s=TINY_LONG_FORM_MERGE_S, encoder_threads=1, llm_threads=1)
    export_checkpoint(
        checkpoint,
        out,
        ExportOptions(profile="cpu", precision="fp32", repository=repo, llm_engine=LlmEngineOptions(**llm_engine)),
    )
    return out


@pytest.fixture(scope="session")
def exported_trained(tiny_trained_dir, tmp_path_factory) -> Path:
    return _export(tiny_trained_dir, tmp_path_factory.mktemp("served-trained"))


@pytest.fixture(scope="session")
def exported_random(tiny_random_dir, tmp_path_factory) -> Path:
    return _export(tiny_random_dir, tmp_path_factory.mktemp("served-random"), max_new_tokens=LONG_GENERATION_TOKENS)


@pytest.fixture(scope="session")
def server_trained(exported_trained, tmp_path_factory):
    """One tritonserver (pytriton's binary, CPU) on the tiny-trained export for the whole session."""
    server = _served(exported_trained, tmp_path_factory.mktemp("triton-trained"))
    try:
        yield server.start(SERVER_START_TIMEOUT_S)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_random(exported_random, tmp_path_factory):
    server = _served(exported_random, tmp_path_factory.mktemp("triton-random"))
    try:
        yield server.start(SERVER_START_TIMEOUT_S)
    finally:
        server.stop()


# -- tokenizer folders the GPU image's transformers 4.57.3 loads -------------------------------
#: Every tokenizer class transformers 4.57.3 (TensorRT-LLM 1.2.1's pin) resolves, recorded from a
#: 4.57.3 install (the command heads the file). transformers 5 writes ``TokenizersBackend``, which
#: 4.57.3 refuses: ``ValueError: Tokenizer class TokenizersBackend does not exist``.
TRANSFORMERS_4_57_TOKENIZER_CLASSES = frozenset(
    line
    for line in (Path(__file__).parent / "data" / "transformers-4.57.3-tokenizer-classes.txt").read_text().splitlines()
    if line and not line.startswith("#")
)

#: Texts a portable tokenizer folder must encode exactly as the folder it came from.
TOKENIZER_PROBE_TEXTS = (
    "Transcribe the following: <|audio|>",
    "call 911 now, at 10:45 - it's   urgent!\n\nOK?",
    "Ünïcödé wörds, naïve café; \t tabs and  double  spaces",
    "<|im_start|>user\nSummarize: the quick brown fox.<|im_end|>\n<|im_start|>assistant\n",
)


def assert_portable_tokenizer_folder(folder: Path, want) -> str:
    """``folder``'s tokenizer names a class transformers 4.57.3 has, and loads here (transformers 5)
    to the same ids and text as ``want`` (a transformers tokenizer, or a folder to load one from);
    returns the class it names."""
    import json

    from transformers import AutoTokenizer

    config = json.loads((folder / "tokenizer_config.json").read_text())
    name = config.get("tokenizer_class")
    assert name in TRANSFORMERS_4_57_TOKENIZER_CLASSES, f"{folder} names {name!r}, unknown to transformers 4.57.3"
    # 4.57.3 reads extra_special_tokens as a dict of named tokens; transformers 5 writes a list there
    assert isinstance(config.get("extra_special_tokens", {}), dict), f"{folder}: extra_special_tokens is a list"
    got = AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)
    if isinstance(want, Path):
        want = AutoTokenizer.from_pretrained(str(want), use_fast=True, local_files_only=True)
    for text in TOKENIZER_PROBE_TEXTS:
        ids = want.convert_tokens_to_ids(want.tokenize(text))
        assert got.convert_tokens_to_ids(got.tokenize(text)) == ids, (folder, text)
        assert got.decode(ids) == want.decode(ids), (folder, text)
    assert (got.eos_token, got.pad_token, len(got)) == (want.eos_token, want.pad_token, len(want))
    return name

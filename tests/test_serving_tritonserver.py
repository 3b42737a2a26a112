"""canary_triton/serving/tritonserver.py at unit level: the tritonserver command line and environment it builds,
the hardening flags, errors on load and timeout, stopping, and finding the models' stub
processes. No tritonserver is started here (the served tests do that through conftest's
fixtures); the processes below are plain Python/sh stand-ins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest

from canary_triton.errors import CanaryTritonError
from canary_triton.serving import tritonserver as srv
from canary_triton.serving.tritonserver import (
    ServerOptions,
    StubSupervisor,
    TritonServer,
    hardening_args,
    server_command,
)

from .conftest import free_port

KEY = "0123abcd"


def test_the_command_line_carries_the_options_and_the_hardening():
    opts = ServerOptions(
        http_port=18000, grpc_port=18001, metrics_port=18002, host="0.0.0.0", log_verbose=1, exit_timeout_s=7
    )
    cmd = server_command(Path("/opt/tritonserver"), Path("/r/model_repository"), Path("/b"), opts, KEY)
    assert cmd[0] == "/opt/tritonserver"
    for flag in (
        "--model-repository=/r/model_repository",
        "--http-port=18000",
        "--grpc-port=18001",
        "--metrics-port=18002",
        "--http-address=0.0.0.0",
        "--grpc-address=0.0.0.0",
        "--log-verbose=1",
        "--exit-timeout-secs=7",
        "--strict-readiness=true",
        "--backend-directory=/b",
    ):
        assert cmd.count(flag) == 1, flag
    assert cmd[-1] == "--backend-directory=/b"  # after the hardening flags (no extra arguments here)
    assert set(hardening_args(opts, KEY)) <= set(cmd)


def test_a_gpu_repository_loads_its_models_one_at_a_time(tmp_path):
    """llm and llm_base size their KV caches from the GPU memory free when each loads: loaded in
    parallel (tritonserver's default, 4 threads) both could claim the same memory."""
    from canary_triton.export.repository import RepositoryOptions, _trtllm_parameters

    cpu = tmp_path / "cpu"
    (cpu / "llm").mkdir(parents=True)
    (cpu / "llm" / "config.pbtxt").write_text('name: "llm"\nbackend: "python"\n')
    cmd = server_command(Path("tritonserver"), cpu, None, ServerOptions(), KEY)
    assert not any(c.startswith("--model-load-thread-count") for c in cmd)  # CPU: parallel, as before
    gpu = tmp_path / "gpu"
    for name in ("llm", "llm_base", "encoder"):
        (gpu / name).mkdir(parents=True)
        backend = 'platform: "tensorrt_plan"' if name == "encoder" else srv.TRTLLM_BACKEND_LINE
        (gpu / name / "config.pbtxt").write_text(f'name: "{name}"\n{backend}\n')
    cmd = server_command(Path("tritonserver"), gpu, None, ServerOptions(), KEY)
    assert cmd.count("--model-load-thread-count=1") == 1
    assert list(srv.SEQUENTIAL_LOAD_ARGS) == ["--model-load-thread-count=1"]
    # what makes it necessary: each tensorrtllm model's pool is a fraction of the memory free then
    params = _trtllm_parameters(tmp_path, "e", "t", RepositoryOptions(), kv_reuse=False)
    assert float(params["kv_cache_free_gpu_mem_fraction"]) > 0 and "max_tokens_in_paged_kv_cache" not in params


def test_no_backend_directory_on_path_and_extra_arguments_go_last():
    opts = ServerOptions(extra_args=("--log-info=false", "--model-control-mode=poll"))
    cmd = server_command(Path("tritonserver"), Path("/r"), None, opts, KEY)
    assert not any(c.startswith("--backend-directory") for c in cmd)
    assert cmd[-2:] == ["--log-info=false", "--model-control-mode=poll"]


def test_restricted_apis_answer_only_with_the_admin_key():
    flags = hardening_args(ServerOptions(), KEY)
    want = f"model-repository,logging,trace,shared-memory:{srv.ADMIN_KEY_HEADER}={KEY}"
    assert f"--http-restricted-api={want}" in flags and f"--grpc-restricted-protocol={want}" in flags
    assert "--allow-sagemaker=false" in flags and "--allow-vertex-ai=false" in flags
    # stub supervision reloads models: explicit model control (restricted to the key), every model loaded
    assert flags[:2] == ["--model-control-mode=explicit", "--load-model=*"]
    shm = hardening_args(ServerOptions(allow_shared_memory=True, supervise_stubs=False), KEY)
    assert f"--http-restricted-api=model-repository,logging,trace:{srv.ADMIN_KEY_HEADER}={KEY}" in shm
    assert "--model-control-mode=none" in shm and not any(f.startswith("--load-model") for f in shm)


def test_the_bundled_server_is_laid_out_with_this_pythons_stub(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/previous/libs")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    binary, backends, env = srv.prepare_bundled_server(tmp_path)
    dist = srv._pytriton_dist()
    assert binary == dist / "bin" / "tritonserver" and os.access(binary, os.X_OK)
    assert backends == tmp_path / "tritonserver" / "backends"
    stub = backends / "python" / "triton_python_backend_stub"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert stub.read_bytes() == (dist / "python_backend_stubs" / version / "triton_python_backend_stub").read_bytes()
    ld = env["LD_LIBRARY_PATH"].split(":")
    assert Path(ld[0]).is_dir() and ld[-1] == "/previous/libs"
    assert (sysconfig.get_config_var("LIBDIR") or ld[0]) in ld
    assert env["PYTHONPATH"].split(":") == [p for p in sys.path if p and Path(p).exists()]
    assert env["OMP_NUM_THREADS"] == "1"
    # a second start reuses the laid-out backends; a thread count the user set is kept
    mtime = stub.stat().st_mtime_ns
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert srv.prepare_bundled_server(tmp_path)[2]["OMP_NUM_THREADS"] == "3"
    assert stub.stat().st_mtime_ns == mtime


def test_without_pytriton_or_its_stub_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(srv, "_pytriton_dist", lambda: None)
    with pytest.raises(CanaryTritonError, match=r"no tritonserver: install the serve extra .*nvidia-pytriton"):
        srv.prepare_bundled_server(tmp_path)
    fake = tmp_path / "dist"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "tritonserver").write_text("")
    monkeypatch.setattr(srv, "_pytriton_dist", lambda: fake)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(CanaryTritonError, match=rf"nvidia-pytriton has no Python-backend stub for Python {version}$"):
        srv.prepare_bundled_server(tmp_path / "work")


def test_urls_and_a_random_admin_key_per_server(tmp_path):
    opts = ServerOptions(http_port=1234, grpc_port=1235, host="10.0.0.2")
    a, b = TritonServer(tmp_path, opts), TritonServer(tmp_path, opts)
    assert (a.http_url, a.grpc_url) == ("10.0.0.2:1234", "10.0.0.2:1235")
    assert a.admin_key != b.admin_key and len(a.admin_key) == 32
    assert TritonServer(tmp_path, ServerOptions(admin_key=KEY)).admin_key == KEY
    assert a.repository == tmp_path.resolve() and a.proc is None and a.stop() is None  # never started


def test_load_errors_are_the_logs_failed_to_load_lines(tmp_path):
    log = tmp_path / "tritonserver.log"
    server = TritonServer(tmp_path, log_path=log)
    assert server.load_errors() == []  # no log yet
    log.write_text(
        "I1201 model.cc:1] loading: encoder:1\n"
        + "".join(
            f"E1201 model_lifecycle.cc:2] failed to load 'm{i}' version 1: Internal: boom {i}\n" for i in range(7)
        )
        + "E1201 server.cc:3] Failed to load the repository\n"
    )
    errors = server.load_errors()
    assert len(errors) == 5 and errors[-1] == "Failed to load the repository"
    assert errors[0] == "failed to load 'm3' version 1: Internal: boom 3"
    assert server.load_errors(limit=1) == ["Failed to load the repository"]


def test_a_server_that_exits_while_loading_names_the_code_the_failures_and_the_log(tmp_path):
    log = tmp_path / "tritonserver.log"
    log.write_text("E1201 model_lifecycle.cc:2] failed to load 'encoder' version 1: Internal: no such file\n")
    server = TritonServer(tmp_path / "repo", ServerOptions(http_port=free_port()), log_path=log)
    server.proc = subprocess.Popen(["sh", "-c", "exit 3"])
    server.proc.wait()
    with pytest.raises(CanaryTritonError) as e:
        server.wait_ready(600)
    lines = str(e.value).splitlines()
    assert lines[0] == f"tritonserver exited with code 3 while loading {(tmp_path / 'repo').resolve()}"
    assert lines[1] == "  failed to load 'encoder' version 1: Internal: no such file" and lines[2] == f"see {log}"


def test_not_ready_in_time_stops_the_server_and_says_so(tmp_path):
    server = TritonServer(tmp_path, ServerOptions(http_port=free_port()))
    assert not server.is_ready()  # nothing listens there
    server.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with pytest.raises(CanaryTritonError, match=r"^tritonserver was not ready after 0 s$"):
        server.wait_ready(0)
    assert server.proc.poll() == -signal.SIGTERM  # stopped, not left running


def test_stop_sends_sigterm_then_kills_the_process_group(tmp_path):
    server = TritonServer(tmp_path)
    server.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    assert server.stop() == -signal.SIGTERM
    assert server.stop() == -signal.SIGTERM  # stopping again: the code it exited with
    stubborn = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; echo up; sleep 60 & wait"], start_new_session=True, stdout=subprocess.PIPE
    )
    assert stubborn.stdout.readline() == b"up\n"  # the trap is set
    server.proc = stubborn
    assert server.stop(timeout_s=0.1) == -signal.SIGKILL  # it ignores SIGTERM: any wait ends in SIGKILL
    stubborn.stdout.close()


def test_the_stub_processes_are_found_by_the_model_py_they_run(tmp_path):
    repo = tmp_path / "model_repository"
    server = TritonServer(repo)
    args = {"encoder": 2, "llm": 1}
    procs = []
    try:
        for model, n in args.items():
            for _ in range(n):
                p = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; print('up', flush=True); sys.stdin.read()",
                        f"{repo.resolve()}/{model}/1/model.py",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                assert p.stdout.readline() == b"up\n"  # running its own command line now
                procs.append((model, p))
        other = tmp_path / "other_repository"
        procs.append(
            (
                None,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; print('up', flush=True); sys.stdin.read()",
                        f"{other}/llm/1/model.py",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                ),
            )
        )
        assert procs[-1][1].stdout.readline() == b"up\n"
        pids = server.stub_pids()
        assert {m: sorted(v) for m, v in pids.items()} == {
            m: sorted(p.pid for mm, p in procs if mm == m) for m in args
        }  # another repository's stubs are not this server's
        supervisor = StubSupervisor(server)
        assert supervisor.baseline == args and supervisor.stub_counts() == args
    finally:
        for _, p in procs:
            p.stdin.close()
            p.wait()
            p.stdout.close()


def test_dump_stacks_reads_each_stubs_threads_from_the_log_and_spares_a_stub_without_the_handler(tmp_path):
    """dump_stacks signals only stubs that catch SIGUSR1 (canary_bootstrap.py registers
    faulthandler there); the stacks are read back from the server log they write to."""
    repo, log = tmp_path / "model_repository", tmp_path / "tritonserver.log"
    server = TritonServer(repo, log_path=log)
    # the "server": this process, alive, the stand-in stubs' parent (a server's stubs are its children)
    server.proc = SimpleNamespace(pid=os.getpid(), poll=lambda: None)
    stub = (
        "import faulthandler, signal, sys, threading\n"
        "if sys.argv[1] == 'handler': faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
        "def waiting_for_the_llm(): sys.stdin.read()\n"
        "threading.Thread(target=waiting_for_the_llm).start()\n"
        "print('up', flush=True)\n"
    )
    procs = {}
    with open(log, "ab") as out:
        try:
            for model, mode in (("llm", "handler"), ("encoder", "none")):
                p = subprocess.Popen(
                    [sys.executable, "-c", stub, mode, f"{repo.resolve()}/{model}/1/model.py"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=out,
                )
                assert p.stdout.readline() == b"up\n"
                procs[model] = p
            stacks = server.dump_stacks(settle_s=0.2)
            assert set(stacks) == {"llm", "encoder"}
            assert "most recent call first" in stacks["llm"] and "waiting_for_the_llm" in stacks["llm"]
            assert "no SIGUSR1 handler" in stacks["encoder"]
            assert all(p.poll() is None for p in procs.values())  # both still running
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait()
                p.stdout.close()


def test_a_served_models_stacks_show_its_threads(server_trained):
    stacks = server_trained.dump_stacks()
    assert set(stacks) == set(server_trained.stub_pids())
    assert all("most recent call first" in text for text in stacks.values()), stacks
    assert "cpu_llm/batcher.py" in stacks["llm"]  # the in-flight batcher's thread
    # every stub's thread that ends it with its tritonserver (canary_bootstrap.py)
    assert all("_end_with_parent" in text for text in stacks.values()), stacks


# -- serve: a tritonserver that ends by itself is started again --------------------------------
class _Proc:
    """A tritonserver process that ends by itself (``returncode``) after ``polls`` polls, or
    whose last poll raises SIGTERM in this process (the operator's stop)."""

    def __init__(self, polls: int, returncode: int | None = -6, sigterm: bool = False):
        self.polls, self.returncode, self.sigterm = polls, None, sigterm
        self._code = returncode

    def poll(self):
        self.polls -= 1
        if self.polls > 0:
            return None
        if self.sigterm:
            signal.raise_signal(signal.SIGTERM)  # the handler sets the stop flag; the loop ends
            return None
        self.returncode = self._code
        return self.returncode


class _Server:
    """What run_forever touches of a TritonServer: each start() runs the next process."""

    def __init__(self, procs):
        self.procs, self.proc, self.starts, self.stops = list(procs), None, 0, 0
        self.watchdog = None
        self.http_url, self.grpc_url = "127.0.0.1:8000", "127.0.0.1:8001"
        self.opts = SimpleNamespace(host="127.0.0.1", metrics_port=8002)

    def start(self):
        self.starts += 1
        self.proc = self.procs.pop(0)
        return self

    def stop(self):
        self.stops += 1
        return self.proc.returncode if self.proc else None


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_serve_starts_a_tritonserver_that_aborted_again_and_stops_on_sigterm(restore_signals, capsys):
    server = _Server([_Proc(2, returncode=-6), _Proc(3, sigterm=True)])
    assert srv.run_forever(server, poll_s=0) == 0  # SIGTERM: a clean exit
    assert server.starts == 2
    err = capsys.readouterr().err
    assert "ended by itself (exit status -6); starting it again (1 of 3 within 600 s)" in err


def test_serve_exits_1_when_tritonserver_keeps_ending_within_the_window(restore_signals, capsys):
    server = _Server([_Proc(1, returncode=-6) for _ in range(4)])
    assert srv.run_forever(server, max_restarts=2, restart_window_s=3600, poll_s=0) == 1
    assert server.starts == 3  # the first start and two restarts; the third end exits
    assert "ended by itself 3 times within 3600 s; exiting for the orchestrator" in capsys.readouterr().err


def test_serve_does_not_restart_a_server_the_watchdog_gave_up_on(restore_signals):
    server = _Server([_Proc(1, returncode=0), _Proc(1)])
    server.watchdog = SimpleNamespace(gave_up=SimpleNamespace(is_set=lambda: True))
    assert srv.run_forever(server, poll_s=0) == 1
    assert server.starts == 1

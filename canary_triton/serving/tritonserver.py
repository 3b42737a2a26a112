"""Starting the real ``tritonserver``: pytriton's bundled binary (CPU profile) or one on PATH.

The ``nvidia-pytriton`` wheel ships Triton Inference Server 2.51 with only the Python backend. To
run it outside pytriton: copy its backends next to a Python-backend stub built for this Python
version, put pytriton's bundled libraries and this interpreter's ``libpython`` on
``LD_LIBRARY_PATH``, and give the stub this environment's ``sys.path`` through ``PYTHONPATH``.
In NVIDIA's container ``tritonserver`` is on PATH with its own backends; it is used as it is.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from canary_triton.errors import CanaryTritonError
from canary_triton.serving.watchdog import Watchdog, WatchdogOptions
from canary_triton.triton_models.stub_watch import stub_processes


@dataclass(frozen=True)
class ServerOptions:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    log_verbose: int = 0
    exit_timeout_s: int = 30
    start_timeout_s: float = 600.0  # how long loading every model may take before start() gives up
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    #: Shared secret for the restricted APIs (header ``admin-key`` on HTTP,
    #: ``triton-grpc-protocol-admin-key`` on gRPC). None: a random one per start, told to no one,
    #: so those APIs are closed.
    admin_key: str | None = None
    allow_shared_memory: bool = False  # client shared-memory registration (restricted unless asked)
    #: Reload a Python model whose stub process died (Triton 2.51's Python backend answers "stub
    #: not healthy" forever instead). Needs explicit model control, restricted to the admin key.
    supervise_stubs: bool = True
    supervise_interval_s: float = 1.0
    #: Probe end to end and recover a server that holds work but answers nothing (serving/watchdog.py);
    #: None: no watchdog (``canary-triton serve`` starts one unless --no-watchdog).
    watchdog: WatchdogOptions | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the system picks it): for servers and
    gateways started by tests, benchmarks and ``canary-triton demo`` beside other work."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: APIs only an operator needs; they answer only with the admin key. Shared memory is the entry
#: point of the 2025 Python-backend CVE chain (CVE-2025-23319/-23320/-23334); model-repository
#: (load/unload) of CVE-2025-23316. Inference, health, metadata, model config and statistics stay open.
RESTRICTED_APIS = ("model-repository", "logging", "trace")
SHARED_MEMORY_API = "shared-memory"
ADMIN_KEY_HEADER = "admin-key"


def hardening_args(opts: ServerOptions, admin_key: str) -> list[str]:
    """tritonserver flags for secure defaults (used by `serve`, checked against the GPU entrypoint)."""
    apis = list(RESTRICTED_APIS) + ([] if opts.allow_shared_memory else [SHARED_MEMORY_API])
    restricted = f"{','.join(apis)}:{ADMIN_KEY_HEADER}={admin_key}"
    # load/unload only with the admin key (the stub supervisor has it); none at all without supervision
    control = (
        ["--model-control-mode=explicit", "--load-model=*"] if opts.supervise_stubs else ["--model-control-mode=none"]
    )
    return [
        *control,
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        f"--http-restricted-api={restricted}",
        f"--grpc-restricted-protocol={restricted}",
    ]


#: A ``tensorrtllm`` model sizes its KV-cache pool as ``kv_cache_free_gpu_mem_fraction`` of the GPU
#: memory free when its instance starts (model_instance_state.cc). tritonserver loads models in
#: parallel (``--model-load-thread-count``, 4 by default), so ``llm`` and ``llm_base`` could both see
#: the same free memory and claim 0.5 + 0.5 of it. One load thread: each pool is sized after the
#: ones loaded before it exist (``llm_base`` gets half of what ``llm`` left).
SEQUENTIAL_LOAD_ARGS = ("--model-load-thread-count=1",)
TRTLLM_BACKEND_LINE = 'backend: "tensorrtllm"'


def load_args(repository: Path) -> list[str]:
    """:data:`SEQUENTIAL_LOAD_ARGS` for a repository holding a ``tensorrtllm`` model (the GPU
    profile's), nothing for the CPU profile's (its models load in parallel, as before)."""
    configs = sorted(Path(repository).glob("*/config.pbtxt"))
    gpu = any(TRTLLM_BACKEND_LINE in c.read_text() for c in configs)
    return list(SEQUENTIAL_LOAD_ARGS) if gpu else []


def _pytriton_dist() -> Path | None:
    try:
        import pytriton  # the serve extra's; optional (NVIDIA's container has tritonserver on PATH)
    except ImportError:
        return None
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def prepare_bundled_server(workdir: str | Path) -> tuple[Path, Path, dict[str, str]]:
    """Lay out pytriton's tritonserver with this Python's stub; returns (binary, backends, env)."""
    dist = _pytriton_dist()
    if dist is None or not (dist / "bin" / "tritonserver").is_file():
        raise CanaryTritonError(
            "no tritonserver: install the serve extra (pip install 'canary-triton[serve]', which brings "
            "nvidia-pytriton) or run inside NVIDIA's Triton container"
        )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise CanaryTritonError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    root = Path(workdir) / "tritonserver"
    backends = root / "backends"
    if not (backends / "python" / "triton_python_backend_stub").is_file():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(dist / "backends", backends)
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    libs = dist.parent.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        libs = dist / "external_libs"
    env = dict(os.environ)
    ld = [str(libs), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in ld if p)
    env["PYTHONPATH"] = ":".join(p for p in sys.path if p and Path(p).exists())
    env.setdefault("OMP_NUM_THREADS", "1")
    return dist / "bin" / "tritonserver", backends, env


def server_command(
    binary: Path, repository: Path, backends: Path | None, opts: ServerOptions, admin_key: str
) -> list[str]:
    cmd = [
        str(binary),
        f"--model-repository={repository}",
        f"--http-port={opts.http_port}",
        f"--grpc-port={opts.grpc_port}",
        f"--metrics-port={opts.metrics_port}",
        f"--http-address={opts.host}",
        f"--grpc-address={opts.host}",
        f"--log-verbose={opts.log_verbose}",
        f"--exit-timeout-secs={opts.exit_timeout_s}",
        "--strict-readiness=true",
        *hardening_args(opts, admin_key),
        *load_args(repository),
    ]
    if backends is not None:
        cmd.append(f"--backend-directory={backends}")
    return cmd + list(opts.extra_args)


class TritonServer:
    """A running ``tritonserver`` process (context manager); stops it with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        repository: str | Path,
        opts: ServerOptions = ServerOptions(),
        workdir: str | Path | None = None,
        log_path: str | Path | None = None,
    ):
        self.repository = Path(repository).resolve()
        self.opts = opts
        self.workdir = Path(workdir) if workdir else Path.home() / ".cache" / "canary-triton"
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.admin_key = opts.admin_key or secrets.token_hex(16)  # random: told to no one but the supervisor
        self.supervisor: StubSupervisor | None = None
        self.watchdog = None  # watchdog.Watchdog, started by start() when the options ask for one

    @property
    def http_url(self) -> str:
        return f"{self.opts.host}:{self.opts.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.opts.host}:{self.opts.grpc_port}"

    def start(self, timeout_s: float | None = None) -> "TritonServer":
        """Launch tritonserver and wait until it is ready (``timeout_s``: default the options')."""
        on_path = shutil.which("tritonserver")
        if on_path and _pytriton_dist() is None:
            binary, backends, env = Path(on_path), None, dict(os.environ)
        else:
            binary, backends, env = prepare_bundled_server(self.workdir)
        cmd = server_command(binary, self.repository, backends, self.opts, self.admin_key)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(self.opts.start_timeout_s if timeout_s is None else timeout_s)
        if self.opts.supervise_stubs:
            self.supervisor = StubSupervisor(self)
            self.supervisor.start()
        if self.opts.watchdog is not None:
            self.watchdog = Watchdog(self, self.opts.watchdog).start()
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise CanaryTritonError(
                    f"tritonserver exited with code {self.proc.returncode} while loading {self.repository}"
                    + "".join(f"\n  {line}" for line in self.load_errors())
                    + (f"\nsee {self.log_path}" if self.log_path else "")
                )
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise CanaryTritonError(f"tritonserver was not ready after {timeout_s:.0f} s")

    def load_errors(self, limit: int = 5) -> list[str]:
        """The log's model-load failures (one line each), to name what could not be loaded."""
        if self.log_path is None or not self.log_path.is_file():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        failed = [ln.split("] ", 1)[-1].strip() for ln in lines if "failed to load" in ln or "Failed to load" in ln]
        return failed[-limit:]

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after the exit timeout; then no process of the server is left:
        whatever of its process group outlived it (a stub stuck in an IPC) is killed."""
        for watcher in (self.watchdog, self.supervisor):
            if watcher is not None:
                watcher.stop()
        self.watchdog = self.supervisor = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s if timeout_s is not None else self.opts.exit_timeout_s + 15)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc.pid)
                self.proc.wait()
        _kill_group(self.proc.pid)  # tritonserver is gone: its stubs go too (it led their group)
        return self.proc.returncode

    def stub_pids(self) -> dict[str, list[int]]:
        """The Python-backend stub processes of this server's models, by model, from /proc (each
        stub's command line names its ``<repository>/<model>/1/model.py``; once started, only the
        children of this server's tritonserver: another server may serve the same repository)."""
        return stub_processes(self.repository, self.proc.pid if self.proc is not None else None)

    def dump_stacks(self, settle_s: float = 0.3, limit_s: float = 10.0) -> dict[str, str]:
        """Every thread's Python stack in each model's stub, by model (what a stuck server was
        doing): each stub in turn gets SIGUSR1 (``faulthandler``, registered by
        canary_bootstrap.py) and writes its stacks to the server log, read back from there once
        the log stops growing for ``settle_s`` (at most ``limit_s`` per stub). Needs ``log_path``."""
        if self.log_path is None or self.proc is None or self.proc.poll() is not None:
            return {}
        stacks: dict[str, str] = {}
        for model, pids in sorted(self.stub_pids().items()):
            for pid in pids:
                key = model if len(pids) == 1 else f"{model} (pid {pid})"
                if not _catches(pid, signal.SIGUSR1):  # SIGUSR1 would end a stub without the handler
                    stacks[key] = "(the stub has no SIGUSR1 handler: a repository without canary_bootstrap.py)"
                    continue
                start = self.log_path.stat().st_size
                try:
                    os.kill(pid, signal.SIGUSR1)
                except ProcessLookupError:
                    continue
                size, changed, deadline = start, time.monotonic(), time.monotonic() + limit_s
                while time.monotonic() < deadline and (size == start or time.monotonic() - changed < settle_s):
                    time.sleep(0.05)
                    now = self.log_path.stat().st_size
                    if now != size:
                        size, changed = now, time.monotonic()
                with open(self.log_path, "rb") as f:
                    f.seek(start)
                    text = f.read(size - start).decode(errors="replace")
                stacks[key] = text or "(nothing written: the stub did not answer SIGUSR1)"
        return stacks

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


class StubSupervisor:
    """Watches the Python-backend stub processes of a running server and reloads a model whose
    stub died (SIGKILL, OOM killer): Triton 2.51's Python backend would answer "stub process is
    not healthy" until the server restarts. Reload = Triton's load API with the admin key, so only
    that model (and the ensembles using it) is re-initialised; the others keep serving."""

    def __init__(self, server: TritonServer):
        self.server = server
        self.baseline = self.stub_counts()  # the steady state after the first load
        self.restarts: list[tuple[str, float]] = []  # (model, seconds until ready again)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stub-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def stub_counts(self) -> dict[str, int]:
        """Stub processes per model, from /proc (the stubs' command lines name model.py)."""
        return {name: len(pids) for name, pids in self.server.stub_pids().items()}

    def _post(self, model: str, action: str) -> None:
        req = urllib.request.Request(
            f"http://{self.server.http_url}/v2/repository/models/{model}/{action}",
            data=b"{}",
            method="POST",
            headers={ADMIN_KEY_HEADER: self.server.admin_key},
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()

    def reload(self, model: str) -> None:
        """Unload, then load: a load of a loaded, unchanged model is a no-op in Triton."""
        self._post(model, "unload")
        deadline = time.monotonic() + 120
        while self.stub_counts().get(model, 0) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._post(model, "load")

    def _loop(self) -> None:
        while not self._stop.wait(self.server.opts.supervise_interval_s):
            if self.server.proc is None or self.server.proc.poll() is not None:
                return
            counts = self.stub_counts()
            missing = [m for m, want in self.baseline.items() if counts.get(m, 0) < want]
            # a server shutting down stops its stubs too: only a live, serving server is repaired
            if not missing or self.server.proc.poll() is not None or not self.server.is_ready():
                continue
            for model in missing:
                if not self._stop.is_set():
                    print(f"canary-triton: the Python stub of model '{model}' died; reloading it", file=sys.stderr)
                    t0 = time.monotonic()
                    try:
                        self.reload(model)
                        self.restarts.append((model, time.monotonic() - t0))
                        print(f"canary-triton: '{model}' reloaded in {time.monotonic() - t0:.1f} s", file=sys.stderr)
                    except OSError as e:
                        print(f"canary-triton: reloading '{model}' failed: {e}", file=sys.stderr)
                        self._stop.wait(10)  # do not hammer a server that cannot load it


#: ``serve`` restarts a ``tritonserver`` that ended by itself at most this many times within
#: :data:`RESTART_WINDOW_S` (Triton 2.51's Python backend can abort, ``boost::interprocess::
#: lock_exception``, when a stub dies holding its IPC lock: docs/reliability.md); past that it exits
#: 1 for the orchestrator.
MAX_RESTARTS = 3
RESTART_WINDOW_S = 600.0


def run_forever(
    server: TritonServer,
    announce: Sequence[str] = (),
    max_restarts: int = MAX_RESTARTS,
    restart_window_s: float = RESTART_WINDOW_S,
    poll_s: float = 0.5,
) -> int:
    """Start, print the endpoints, and stop cleanly on Ctrl-C / SIGTERM. A ``tritonserver`` that
    ends by itself is started again (``max_restarts`` within ``restart_window_s``), unless the
    watchdog gave up on it."""
    stop = {"flag": False}

    def handler(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    server.start()
    watchdog = server.watchdog  # stop() forgets it
    print(
        f"ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  metrics http://{server.opts.host}:{server.opts.metrics_port}/metrics"
    )
    for line in announce:
        print(line)
    sys.stdout.flush()
    restarts: list[float] = []
    while True:
        while not stop["flag"] and server.proc is not None and server.proc.poll() is None:
            time.sleep(poll_s)
        gave_up = watchdog is not None and watchdog.gave_up.is_set()
        if stop["flag"] or gave_up or server.proc is None:
            break
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < restart_window_s]
        if len(restarts) >= max_restarts:
            print(
                f"canary-triton: tritonserver ended by itself {len(restarts) + 1} times within "
                f"{restart_window_s:.0f} s; exiting for the orchestrator",
                file=sys.stderr,
            )
            break
        restarts.append(now)
        print(
            f"canary-triton: tritonserver ended by itself (exit status {server.proc.returncode}); "
            f"starting it again ({len(restarts)} of {max_restarts} within {restart_window_s:.0f} s)",
            file=sys.stderr,
        )
        server.stop()
        server.start()
        watchdog = server.watchdog
    code = server.stop()
    if gave_up:
        print("canary-triton: the server was wedged and did not recover; exiting 1", file=sys.stderr)
        return 1
    if stop["flag"]:
        return 0
    return code if code is not None and code > 0 else 1  # a signal's death (negative) exits 1

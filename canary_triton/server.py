"""Starting the real ``tritonserver``: pytriton's bundled binary (CPU profile) or one on PATH.

The ``nvidia-pytriton`` wheel ships Triton Inference Server 2.51 with only the Python backend. To
run it outside pytriton: copy its backends next to a Python-backend stub built for this Python
version, put pytriton's bundled libraries and this interpreter's ``libpython`` on
``LD_LIBRARY_PATH``, and give the stub this environment's ``sys.path`` through ``PYTHONPATH``.
In NVIDIA's container ``tritonserver`` is on PATH with its own backends; it is used as it is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import CanaryTritonError


@dataclass(frozen=True)
class ServerOptions:
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    log_verbose: int = 0
    exit_timeout_s: int = 30
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def _pytriton_dist() -> Path | None:
    try:
        import pytriton
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


def server_command(binary: Path, repository: Path, backends: Path | None, opts: ServerOptions) -> list[str]:
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
    ]
    if backends is not None:
        cmd.append(f"--backend-directory={backends}")
    return cmd + list(opts.extra_args)


class TritonServer:
    """A running ``tritonserver`` process (context manager); stops it with SIGTERM, then SIGKILL."""

    def __init__(self, repository: str | Path, opts: ServerOptions = ServerOptions(),
                 workdir: str | Path | None = None, log_path: str | Path | None = None):
        self.repository = Path(repository).resolve()
        self.opts = opts
        self.workdir = Path(workdir) if workdir else Path.home() / ".cache" / "canary-triton"
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.opts.host}:{self.opts.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.opts.host}:{self.opts.grpc_port}"

    def start(self, timeout_s: float = 180.0) -> "TritonServer":
        on_path = shutil.which("tritonserver")
        if on_path and _pytriton_dist() is None:
            binary, backends, env = Path(on_path), None, dict(os.environ)
        else:
            binary, backends, env = prepare_bundled_server(self.workdir)
        cmd = server_command(binary, self.repository, backends, self.opts)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout_s)
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
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            if self.is_ready():
                return
            time.sleep(0.5)
        self.stop()
        raise CanaryTritonError(f"tritonserver was not ready after {timeout_s:.0f} s")

    def stop(self, timeout_s: float | None = None) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s if timeout_s is not None else self.opts.exit_timeout_s + 15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_forever(server: TritonServer, announce: Sequence[str] = ()) -> int:
    """Start, print the endpoints, and stop cleanly on Ctrl-C / SIGTERM."""
    stop = {"flag": False}

    def handler(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    server.start()
    print(f"ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  metrics http://{server.opts.host}:{server.opts.metrics_port}/metrics")
    for line in announce:
        print(line)
    sys.stdout.flush()
    while not stop["flag"] and server.proc is not None and server.proc.poll() is None:
        time.sleep(0.5)
    code = server.stop()
    return 0 if stop["flag"] else (code or 1)

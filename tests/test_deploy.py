"""Dockerfiles and Kubernetes manifests: linted with the tools made for them, checked against the
``serve`` command, and the CPU image's entrypoint run for real (the GPU image is not built here)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canary_triton import contract as C
from canary_triton.cli import build_parser
from canary_triton.client.transcribe import ClientOptions, transcribe
from canary_triton.gateway import API_KEY_ENV
from canary_triton.serving.tritonserver import (
    ADMIN_KEY_HEADER,
    RESTRICTED_APIS,
    SHARED_MEMORY_API,
    ServerOptions,
    free_port,
    hardening_args,
)

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKERFILES = [ROOT / "Dockerfile.triton", ROOT / "Dockerfile.cpu"]
PORTS = {ServerOptions.http_port, ServerOptions.grpc_port, ServerOptions.metrics_port}


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is installed by the dev extra"
    return found


def build_parser_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    r = subprocess.run([_bin("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_agrees_with_serve(dockerfile):
    text = dockerfile.read_text()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == PORTS
    user = re.findall(r"^USER (\S+)$", text, re.M)[-1]
    assert user.isdigit() and int(user) != 0  # non-root, numeric
    assert "/v2/health/ready" in text and "HEALTHCHECK" in text
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    script = re.search(rf"^COPY (\S+) {re.escape(entry)}$", text, re.M).group(1)
    assert (ROOT / script).is_file()
    if dockerfile.name == "Dockerfile.triton":
        assert re.search(r"tritonserver:\$\{TRITON_RELEASE\}-trtllm-python-py3", text)
        assert re.search(r"ARG TRITON_RELEASE=(2[6-9]|[3-9]\d)\.\d\d", text)  # >= 26.06 per the CVE list


def test_dockerignore_keeps_the_image_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def _docs():
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_kubernetes_validate():
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    r = subprocess.run([_bin("kubernetes-validate"), "--strict", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_validate_catches_mistakes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((K8S / "service.yaml").read_text().replace("targetPort: http", "targetPortt: http"))
    r = subprocess.run([_bin("kubernetes-validate"), "--strict", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def _container(pod: dict, name: str) -> dict:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def test_manifests_agree_with_each_other_and_with_serve():
    docs = _docs()
    dep = docs[("Deployment", "canary-triton")]
    pod = dep["spec"]["template"]["spec"]
    container = _container(pod, "triton")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002} and set(ports.values()) == PORTS
    svc = docs[("Service", "canary-triton")]
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == set(ports)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    # readiness and liveness answer a real request end to end (canary-triton probe), on the pod's gRPC port
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        command = probe["exec"]["command"]
        assert (
            command[:2] == ["canary-triton", "probe"]
            and command[command.index("--url") + 1] == f"127.0.0.1:{ports['grpc']}"
        )
        deadline = float(command[command.index("--deadline") + 1])
        assert probe["timeoutSeconds"] >= 2 * deadline  # two requests, each within the deadline
    assert "probe" in build_parser_commands()
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1200
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"] == 1 == container["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert pod["terminationGracePeriodSeconds"] > 30  # tritonserver's exit timeout in the GPU entrypoint
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["CANARY_ENGINES"]] == "engines"
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    }
    assert ("PersistentVolumeClaim", claims["engines"]) in docs  # engines cached on a volume
    hpa = docs[("HorizontalPodAutoscaler", "canary-triton")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = docs[("ConfigMap", "canary-triton-adapter-rules")]["data"]["config.yaml"]
    assert f"as: {metric}" in rules and "nv_inference_queue_duration_us" in rules
    pdb = docs[("PodDisruptionBudget", "canary-triton")]
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def test_gateway_sidecar_agrees_with_its_command_and_service():
    docs = _docs()
    pod = docs[("Deployment", "canary-triton")]["spec"]["template"]["spec"]
    gw, triton = _container(pod, "gateway"), _container(pod, "triton")
    args = build_parser().parse_args(gw["args"])  # the arguments the command takes
    assert gw["command"] == ["canary-triton"] and args.command == "gateway"
    triton_grpc = next(p["containerPort"] for p in triton["ports"] if p["name"] == "grpc")
    assert args.triton_url == f"127.0.0.1:{triton_grpc}" and args.host == "0.0.0.0"
    (port,) = gw["ports"]
    assert port["containerPort"] == args.port and port["name"] == "openai"
    assert gw["readinessProbe"]["httpGet"] == {"path": "/health", "port": "openai"}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "openai"}
    env = {e["name"]: e for e in gw["env"]}
    assert "secretKeyRef" in env[API_KEY_ENV]["valueFrom"]  # the key comes from a Secret, not the manifest
    assert (
        gw["securityContext"]["allowPrivilegeEscalation"] is False
        and "nvidia.com/gpu" not in gw["resources"]["requests"]
    )
    svc = docs[("Service", "canary-triton-gateway")]
    assert svc["spec"]["selector"] == docs[("Deployment", "canary-triton")]["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["openai"]


@pytest.mark.served  # starts tritonserver in a subprocess
def test_cpu_image_entrypoint_exports_serves_and_stops(tiny_trained_dir, oracle_trained, heldout, tmp_path):
    """Runs deploy/entrypoint-cpu.sh as the CPU image does, with the tiny-trained checkpoint."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        CANARY_CHECKPOINT=str(tiny_trained_dir),
        CANARY_EXPORT=str(tmp_path / "export"),
        CANARY_HOST="127.0.0.1",
        CANARY_HTTP_PORT=str(http),
        CANARY_GRPC_PORT=str(grpc),
        CANARY_METRICS_PORT=str(metrics),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    err = open(tmp_path / "stderr.log", "w")  # a file: an unread pipe could fill and block the child
    proc = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "entrypoint-cpu.sh")], env=env, stdout=subprocess.PIPE, stderr=err, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"ready: HTTP http://127.0.0.1:{http}"), (
            line + (tmp_path / "stderr.log").read_text()[-3000:]
        )
        audio = heldout[2][0]
        assert transcribe(audio, ClientOptions(url=f"127.0.0.1:{grpc}")) == oracle_trained.transcribe([audio])[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)  # a bound against a hang
    assert code == 0


def test_gpu_entrypoint_applies_the_same_secure_defaults_as_serve():
    text = (ROOT / "deploy" / "entrypoint-gpu.sh").read_text()
    flags = hardening_args(ServerOptions(supervise_stubs=False), "KEY")
    for flag in flags:
        name = flag.split("=", 1)[0]
        assert name in text, name
    assert "--model-control-mode=none" in text
    for api in (*RESTRICTED_APIS, SHARED_MEMORY_API):
        assert api in text
    assert f"{ADMIN_KEY_HEADER}=$key" in text
    limit = int(C.MAX_LONG_FORM_SECONDS) * C.MelParams().sample_rate * 4
    assert (
        f"--http-max-input-size=$(({int(C.MAX_LONG_FORM_SECONDS)} * {C.MelParams().sample_rate} * 4 + 1048576))" in text
    )
    assert limit > 0
    subprocess.run(["bash", "-n", str(ROOT / "deploy" / "entrypoint-gpu.sh")], check=True)


def test_gpu_entrypoint_loads_models_one_at_a_time_as_serve_does():
    """llm and llm_base each take kv_cache_free_gpu_mem_fraction of the memory free when they load;
    tritonserver's parallel loading (4 threads by default) could let both claim the same memory."""
    from canary_triton.serving.tritonserver import SEQUENTIAL_LOAD_ARGS

    exec_line = (ROOT / "deploy" / "entrypoint-gpu.sh").read_text().split("exec tritonserver", 1)[1]
    for flag in SEQUENTIAL_LOAD_ARGS:
        assert exec_line.count(flag) == 1, flag

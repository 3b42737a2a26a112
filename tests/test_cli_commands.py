"""canary_triton/cli/commands.py without a server: make-fixture, serve's and probe's answers when
there is nothing to serve or probe (inspect, demo and serve end to end: tests/test_cli.py)."""

from __future__ import annotations

from canary_triton.serving.tritonserver import free_port

from .conftest import cli_in_process


def test_make_fixture_writes_a_checkpoint_that_inspect_reads(tmp_path):
    r = cli_in_process("make-fixture", "tiny-random", str(tmp_path / "ckpt"), "--seed", "7")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert cli_in_process("inspect", str(tmp_path / "ckpt")).returncode == 0


def test_serve_without_a_repository_is_one_line(tmp_path):
    r = cli_in_process("serve", str(tmp_path / "nothing"))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: model repository {tmp_path / 'nothing'} does not exist; create it with `canary-triton export`"
    )


def test_probe_of_a_port_nobody_listens_on_says_not_serving():
    r = cli_in_process("probe", "--url", f"127.0.0.1:{free_port()}", "--deadline", "5")
    assert r.returncode == 1 and r.stdout.startswith("not serving (")

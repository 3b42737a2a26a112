"""canary_triton/triton_models/stub_watch.py: a BLS caller finds its callee's stub among its parent's children
and sees it end (a real child process named like a stub, a pidfd)."""

from __future__ import annotations

import os
import subprocess
import sys

from canary_triton.triton_models.stub_watch import NO_STUB, StubWatch, find_stub_pids


def _fake_stub(repo, model: str) -> subprocess.Popen:
    """A child of this process whose command line names ``<repo>/<model>/1/model.py`` as a
    Python-backend stub's does; it waits on its stdin."""
    path = repo / model / "1" / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# a model\n")
    code = "import sys; sys.stdin.read()"
    return subprocess.Popen([sys.executable, "-c", code, str(path), "shm-region"], stdin=subprocess.PIPE)


def test_the_callees_stub_is_found_and_its_end_is_seen_then_its_successor(tmp_path):
    repo = tmp_path / "repo"
    first, other = _fake_stub(repo, "llm"), _fake_stub(repo, "encoder")
    try:
        assert find_stub_pids(repo, "llm", os.getpid()) == [first.pid]
        assert find_stub_pids(repo, "llm", first.pid) == []  # another parent's children only
        watch = StubWatch(repo, "llm", parent=os.getpid())
        generation = watch.current()
        assert generation.pids == (first.pid,) and not generation.ended()
        assert watch.current() is generation  # alive: no new lookup
        first.kill()
        first.wait()
        assert generation.ended()  # what a request sent to it then sees
        second = _fake_stub(repo, "llm")  # the supervisor's reload
        try:
            successor = watch.current()
            assert successor.pids == (second.pid,) and not successor.ended()
            assert generation.ended()  # the old one stays ended for the requests that hold it
        finally:
            second.kill()
            second.wait()
    finally:
        for p in (first, other):
            p.kill()
            p.wait()


def test_a_callee_without_a_stub_is_never_ended(tmp_path):
    repo = tmp_path / "repo"
    (repo / "llm").mkdir(parents=True)  # a tensorrtllm model: config.pbtxt, no model.py
    watch = StubWatch(repo, "llm", parent=os.getpid())
    assert not watch.enabled and watch.current() is NO_STUB and not NO_STUB.ended()
    (repo / "llm" / "1").mkdir()
    (repo / "llm" / "1" / "model.py").write_text("")
    watch = StubWatch(repo, "llm", parent=os.getpid())  # a Python model not loaded yet: nothing to watch
    assert watch.enabled and watch.current() is NO_STUB

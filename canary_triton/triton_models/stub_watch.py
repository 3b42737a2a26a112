"""Whether the Python-backend stub of a model this stub calls through BLS is still the one that
took a request: a BLS caller's bound on waiting for a callee that died.

Triton 2.51 (python_backend r24.10) does not end the decoupled BLS calls that a SIGKILLed stub
had accepted: their response iterators wait for ever (found by the soak, docs/reliability.md).
The stub supervisor reloads the model, fresh requests succeed and the watchdog's probe passes, so
only the caller can tell. Every stub of a server is a child of its ``tritonserver`` and names its
``<repository>/<model>/1/model.py`` on its command line, so a caller (itself a stub, a child of
the same ``tritonserver``) finds the callee's stubs in ``/proc`` and holds a pidfd of each: a
pidfd becomes readable when its process ends, is immune to pid reuse and costs one ``poll`` to
ask. A callee with no stub (the GPU profile's ``tensorrtllm`` runs inside ``tritonserver``, which
the caller's stub does not outlive) is never reported ended.

Linux only (``/proc``, ``os.pidfd_open``: Linux 5.3, Python 3.9); elsewhere nothing is watched.
"""

from __future__ import annotations

import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StubGeneration:
    """The callee's stub processes at one moment (pidfds, usually one: the ``llm`` has one
    instance). Requests sent while this generation lived are lost once any of them has ended."""

    pids: tuple[int, ...]
    fds: tuple[int, ...]

    def ended(self) -> bool:
        """True once one of these processes has ended (a poll, no wait)."""
        if not self.fds:
            return False
        try:
            ready = select.poll()
            for fd in self.fds:
                ready.register(fd, select.POLLIN)
            return bool(ready.poll(0))
        except (OSError, ValueError):  # a closed fd: that generation is over
            return True


NO_STUB = StubGeneration(pids=(), fds=())


def stub_processes(repository: str | Path, parent: int | None) -> dict[str, list[int]]:
    """The Python-backend stub processes of ``repository``'s models, by model, from ``/proc``:
    each stub's command line names its ``<repository>/<model>/1/model.py``. With ``parent``, only
    that process's children (another server may serve the same repository)."""
    repo = os.path.realpath(repository) + os.sep
    pids: dict[str, list[int]] = {}
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            if parent is not None:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != parent:
                        continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for a in args:
            if a.endswith(b"/1/model.py"):
                path = os.path.realpath(a.decode(errors="replace"))
                if path.startswith(repo):
                    pids.setdefault(path[len(repo) :].split(os.sep)[0], []).append(int(pid))
                    break
    return {model: sorted(found) for model, found in pids.items()}


def find_stub_pids(repository: str | Path, model: str, parent: int) -> list[int]:
    """The pids of ``parent``'s children whose command line names ``<repository>/<model>/1/model.py``."""
    return stub_processes(repository, parent).get(model, [])


class StubWatch:
    """The current :class:`StubGeneration` of one callee model, found again once it has ended
    (the supervisor reloaded the model: new stubs). Thread-safe; one per calling model."""

    def __init__(self, repository: str | Path, model: str, parent: int | None = None):
        self.repository, self.model = Path(repository), model
        self.parent = os.getppid() if parent is None else parent
        self._lock = threading.Lock()
        self._current = NO_STUB
        self._retired: list[StubGeneration] = []
        # a callee without a model.py is not a Python-backend model (tensorrtllm): nothing to watch
        self.enabled = (self.repository / model / "1" / "model.py").is_file() and hasattr(os, "pidfd_open")

    def current(self) -> StubGeneration:
        """The callee's live stubs now (looked up again when the last ones have ended or none
        was found); :data:`NO_STUB` when it has none (another backend, or not loaded yet)."""
        if not self.enabled:
            return NO_STUB
        with self._lock:
            if self._current.fds and not self._current.ended():
                return self._current
            if self._current.fds:
                # kept open, not closed: a request in flight may still poll it (and must see it ended)
                self._retired.append(self._current)
            pids, fds = [], []
            for pid in find_stub_pids(self.repository, self.model, self.parent):
                try:
                    fds.append(os.pidfd_open(pid))
                    pids.append(pid)
                except (AttributeError, OSError):  # no pidfd here, or the process just ended
                    continue
            self._current = StubGeneration(tuple(pids), tuple(fds)) if fds else NO_STUB
            self._close_retired()
            return self._current

    def _close_retired(self, keep: int = 8) -> None:
        # an ended generation's fds stay open for the requests that may still ask it; the oldest
        # are closed (a request that old has long been answered: its ended() then says True too)
        while len(self._retired) > keep:
            for fd in self._retired.pop(0).fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

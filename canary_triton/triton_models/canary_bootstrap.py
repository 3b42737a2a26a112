"""Imported first by every model.py (copied next to it by the repository generator).

The Python-backend stub starts with an ASCII locale (importing torch/NeMo then fails with
UnicodeDecodeError) and an isolated ``sys.path`` that ignores ``PYTHONPATH``. This sets a UTF-8
locale and puts the serving environment's paths first, processing their ``.pth`` files (so an
editable install's import hooks work). In NVIDIA's container, with the project installed in the
system Python, ``PYTHONPATH`` is empty and nothing changes.

``kill -USR1 <stub pid>`` writes the Python stack of every thread of that model to the server's
log (``faulthandler``, which runs even while the stub's threads are blocked): the evidence of a
model that stopped answering. ``TritonServer.dump_stacks`` does it for every model.

A stub never outlives its ``tritonserver``: a thread waits for the parent process to end (a
pidfd, no polling) and then ends the stub at once (``os._exit``). Triton 2.51's stub can be left
behind otherwise: one whose threads are blocked in an IPC ignored SIGTERM and stayed, an orphan,
until SIGKILL; and a ``tritonserver`` killed with SIGKILL stops none of its stubs.
"""

import faulthandler
import locale
import os
import select
import signal
import site
import sys
import threading

faulthandler.register(signal.SIGUSR1, all_threads=True)


def _end_with_parent(parent: int) -> None:
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3): poll the parent's pid instead
        while os.getppid() == parent:
            select.select([], [], [], 1.0)
    else:
        select.select([fd], [], [])  # readable once the parent has ended
    os._exit(1)


threading.Thread(target=_end_with_parent, args=(os.getppid(),), name="canary-end-with-parent", daemon=True).start()

locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
_before = list(sys.path)
for _path in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in _before:
        site.addsitedir(_path)
sys.path[:] = [p for p in sys.path if p not in _before] + _before

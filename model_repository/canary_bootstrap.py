"""Imported first by every model.py (copied next to it by the repository generator).

The Python-backend stub starts with an ASCII locale (importing torch/NeMo then fails with
UnicodeDecodeError) and an isolated ``sys.path`` that ignores ``PYTHONPATH``. This sets a UTF-8
locale and puts the serving environment's paths first, processing their ``.pth`` files (so an
editable install's import hooks work). In NVIDIA's container, with the project installed in the
system Python, ``PYTHONPATH`` is empty and nothing changes.

``kill -USR1 <stub pid>`` writes the Python stack of every thread of that model to the server's
log (``faulthandler``, which runs even while the stub's threads are blocked): the evidence of a
model that stopped answering. ``TritonServer.dump_stacks`` does it for every model.
"""

import faulthandler
import locale
import os
import signal
import site
import sys

faulthandler.register(signal.SIGUSR1, all_threads=True)

locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
_before = list(sys.path)
for _path in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in _before:
        site.addsitedir(_path)
sys.path[:] = [p for p in sys.path if p not in _before] + _before

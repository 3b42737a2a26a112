"""Imported first by every model.py (copied next to it by the repository generator).

The Python-backend stub starts with an ASCII locale (importing torch/NeMo then fails with
UnicodeDecodeError) and an isolated ``sys.path`` that ignores ``PYTHONPATH``. This sets a UTF-8
locale and puts the serving environment's paths first, processing their ``.pth`` files (so an
editable install's import hooks work). In NVIDIA's container, with the project installed in the
system Python, ``PYTHONPATH`` is empty and nothing changes.
"""

import locale
import os
import site
import sys

locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
_before = list(sys.path)
for _path in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if _path and _path not in _before:
        site.addsitedir(_path)
sys.path[:] = [p for p in sys.path if p not in _before] + _before

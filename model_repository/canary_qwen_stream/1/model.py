"""Triton model `canary_qwen_stream`: a thin shell over canary_triton.triton_models.canary_qwen_stream."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton.triton_models.canary_qwen_stream import StreamModel  # noqa: E402


class TritonPythonModel(StreamModel):
    def __init__(self):
        super().__init__(pb_utils)

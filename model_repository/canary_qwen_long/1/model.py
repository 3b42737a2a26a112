"""Triton models `canary_qwen_long` and `canary_qwen_long_stream`: a thin shell over
canary_triton.triton_models.canary_qwen_long."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton.triton_models.canary_qwen_long import LongFormModel  # noqa: E402


class TritonPythonModel(LongFormModel):
    def __init__(self):
        super().__init__(pb_utils)

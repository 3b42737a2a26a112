"""Triton model `encoder` (CPU profile): a thin shell over canary_triton.triton_models.encoder."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton.triton_models.encoder import EncoderModel  # noqa: E402


class TritonPythonModel(EncoderModel):
    def __init__(self):
        super().__init__(pb_utils)

"""Triton model `postprocessor`: a thin shell over canary_triton.triton_models.postprocessor."""

import canary_bootstrap  # noqa: F401  (locale + sys.path for the stub; must come first)
import triton_python_backend_utils as pb_utils  # noqa: E402

from canary_triton.triton_models.postprocessor import PostprocessorModel  # noqa: E402


class TritonPythonModel(PostprocessorModel):
    def __init__(self):
        super().__init__(pb_utils)

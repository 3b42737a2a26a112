"""Sources of the Triton Python models (``<model>/1/model.py``), copied by the repository
generator (``canary_triton.export.repository``) into a generated repository. Each is a thin
adapter over the ``canary_triton`` library. Mapped to ``canary_triton.model_repository``."""

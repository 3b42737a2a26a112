"""Sources of the Triton Python models (``<model>/1/model.py``), copied by the repository
generator (``canary_triton.export.repository``) into a generated repository. Each is a thin
shell over its class in ``canary_triton.triton_models``. Mapped to ``canary_triton.model_repository``."""

"""The Triton Python models, one module per model (named by the model), as library classes.

Each class takes the Python backend's ``triton_python_backend_utils`` module as its constructor
argument; the generated repository's ``<model>/1/model.py`` is a thin shell (written by
``canary_triton.export.model_shells``) that imports ``canary_bootstrap`` first, then that module,
and exposes ``TritonPythonModel`` as a subclass passing it in. Nothing here imports Triton, so
each model's ``initialize``/``execute`` runs in-process in the tests against a fake of
``pb_utils`` (``tests/fake_pb_utils.py``).
"""

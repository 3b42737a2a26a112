"""Benchmarks of the served pipeline (run as files: ``python -m benchmarks.NAME --help``).

See ``benchmarks/README.md`` for what each one measures, and the exit codes; the GPU runbook is ``docs/gpu-runbook.md``.
"""

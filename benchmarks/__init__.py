"""Benchmarks of the served pipeline (run as files: ``python -m benchmarks.NAME --help``).

See ``benchmarks/README.md`` for what each one measures, the exit codes and the GPU runbook.
"""

"""``python -m canary_triton.cli``: the same as the ``canary-triton`` console script."""

from canary_triton.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

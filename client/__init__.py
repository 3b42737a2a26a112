"""Python clients over tritonclient (mapped to ``canary_triton.client``)."""

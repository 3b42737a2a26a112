"""The GPU profile's planning: the throughput model, the pinned GPU stack, the first run inside
NVIDIA's Triton container."""

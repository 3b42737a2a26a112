"""Serve NVIDIA Canary-Qwen-2.5B on Triton Inference Server."""

__version__ = "0.1.0"

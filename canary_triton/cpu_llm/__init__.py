"""The CPU profile's LLM engine (what TensorRT-LLM's in-flight batcher is on the GPU): a
scheduler that decides, a runner that computes, the batcher's thread between them, request
parsing and per-request response channels."""

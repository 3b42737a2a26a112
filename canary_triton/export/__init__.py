"""Export: checkpoint -> ONNX encoder+projector -> TensorRT engine; LoRA-merged Qwen3 -> TRT-LLM engine.

(Delivered by the export issue; this package is mapped to ``canary_triton.export``.)
"""

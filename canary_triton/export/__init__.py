"""The export: a checkpoint in, an export folder out (``pipeline.export_checkpoint``).

- ``options``: what an export runs with; ``frontend``: the mel constants;
- ``onnx_encoder``: the encoder and projector to ONNX (``to_onnx``, the one ``torch.onnx.export``
  call), the int8 encoder;
- ``lora``: the LoRA-merged and base Qwen3 folders; ``tensorrt_engine``, ``trtllm_engine``: the GPU
  profile's TensorRT and TensorRT-LLM engine builds; ``gpu_checks``: their load-time checks;
- ``repository``: every ``config.pbtxt`` from one description, over ``pbtxt`` (one config
  rendered) and ``repository_options`` (the settings); ``model_shells``: the Triton models'
  ``model.py`` shells;
- ``parity``: every CPU artifact against NeMo in-process (``parity.json``, ``parity.md``);
- ``pipeline``: the stages in order.
"""

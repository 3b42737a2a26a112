"""ONNX Runtime sessions for the exported encoder and projector: the CPU serving path (the
graphs are written by :mod:`canary_triton.export.onnx_encoder`).

- encoder: ``mel`` [B, n_mels, T] fp32 + ``mel_length`` [B] int64 ->
  ``encoded`` [B, T', d_enc] + ``encoded_length`` [B] int64;
- projector: ``encoded`` [B, T', d_enc] -> ``prompt_embedding_table`` [B, T', hidden].
"""

from __future__ import annotations

from pathlib import Path

from canary_triton import contract as C

#: The graphs' input and output names: the served tensors' (contract).
ONNX_IN_MEL, ONNX_IN_MEL_LENGTH = C.MEL.name, C.MEL_LENGTH.name
ONNX_OUT_ENCODED, ONNX_OUT_ENCODED_LENGTH = C.ENCODED.name, C.ENCODED_LENGTH.name
ONNX_OUT_TABLE = C.PROMPT_EMBEDDING_TABLE.name


class OnnxEncoderProjector:
    """ONNX Runtime sessions for the exported encoder and projector (either may be left out)."""

    def __init__(self, encoder_path: str | Path | None, projector_path: str | Path | None, threads: int = 1):
        """Either path may be None: the served encoder and projector models each load only theirs."""
        import onnxruntime as ort  # here: the models that import loaders without a session need none

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: the LLM engine shares these cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No memory arena: activations go back to the system after each run instead of the arena
        # keeping its high-water mark (full size, batch 16 of 2 s: 3,232 vs 3,655 MiB RSS, as fast).
        opts.enable_cpu_mem_arena = False

        def session(path):
            return None if path is None else ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        self.encoder = session(encoder_path)
        self.projector = session(projector_path)

    def encode(self, mel, mel_length):
        return tuple(self.encoder.run(None, {ONNX_IN_MEL: mel, ONNX_IN_MEL_LENGTH: mel_length}))

    def project(self, encoded):
        return self.projector.run(None, {ONNX_OUT_ENCODED: encoded})[0]

"""The GPU steps' real code, short of TensorRT itself: profiles, table sizing, build settings.

TensorRT and TensorRT-LLM are not installable on CPU machines; the engine builds run in NVIDIA's
container. What does not need them is tested here; their absence is tested in test_export_pipeline.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from canary_triton import contract as C
from canary_triton.export import tensorrt_engine
from canary_triton.export.tensorrt_engine import EngineOptions, encoder_profiles
from canary_triton.export.trtllm_engine import (
    PLUGIN_SETTINGS,
    LlmEngineOptions,
    build_config_kwargs,
    trtllm_build_command,
)


def test_encoder_profiles_cover_the_40s_limit():
    opts = EngineOptions(max_batch=16, opt_batch=8, max_audio_seconds=40.0, opt_audio_seconds=10.0)
    shapes = encoder_profiles(opts, C.MelParams(), C.Subsampling(), encoder_dim=1024)
    lo, opt, hi = shapes["encoder"]["mel"]
    assert lo == (1, 128, 1) and opt == (8, 128, 1001) and hi == (16, 128, 4001)
    assert shapes["encoder"]["mel_length"] == ((1,), (8,), (16,))
    # 40 s -> 4001 mel columns -> 501 encoder frames in the padded tensor (500 valid).
    assert shapes["projector"]["encoded"] == ((1, 1, 1024), (8, 126, 1024), (16, 501, 1024))


def test_engine_options_are_checked():
    with pytest.raises(ValueError, match="precision"):
        EngineOptions(precision="int8")
    with pytest.raises(ValueError, match="opt_batch"):
        EngineOptions(max_batch=4, opt_batch=8)
    with pytest.raises(ValueError, match="opt_audio_seconds"):
        EngineOptions(max_audio_seconds=10.0, opt_audio_seconds=20.0)


def test_llm_engine_sizing_from_the_contract():
    opts = LlmEngineOptions(max_batch=64, max_audio_frames=500, prompt_tokens=64, max_new_tokens=512)
    k = build_config_kwargs(opts)
    assert k["max_prompt_embedding_table_size"] == 64 * 500  # the backend's per-request cap is 500 rows
    assert k["max_input_len"] == max(564, C.MAX_TEXT_PROMPT_TOKENS)
    assert k["max_seq_len"] == k["max_input_len"] + 512
    assert k["strongly_typed"] is True
    assert PLUGIN_SETTINGS == {"remove_input_padding": True, "paged_kv_cache": True, "use_paged_context_fmha": True}


def test_trtllm_build_command_line():
    cmd = trtllm_build_command("ckpt", "engine", LlmEngineOptions(max_batch=8, dtype="bfloat16"))
    assert cmd[0] == "trtllm-build"
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["--max_prompt_embedding_table_size"] == str(8 * 501)  # default: C.max_table_rows()
    assert flags["--kv_cache_type"] == "paged" and flags["--remove_input_padding"] == "enable"
    assert flags["--gemm_plugin"] == "bfloat16"


def test_llm_engine_options_are_checked():
    with pytest.raises(ValueError, match="weight_quant"):
        LlmEngineOptions(weight_quant="int3")
    # fp8 needs ModelOpt quantisation with calibration, which the export does not run: refused, saying so.
    with pytest.raises(ValueError, match="fp8 is not supported: it needs ModelOpt quantisation"):
        LlmEngineOptions(weight_quant="fp8")
    with pytest.raises(ValueError, match="dtype"):
        LlmEngineOptions(dtype="float32")


def test_a_40s_clip_fits_every_table_limit():
    """The TensorRT encoder returns every frame of its padded input: 40 s = 640000 samples -> 4001
    mel columns -> 501 rows (500 valid). Each limit is C.max_table_rows(), so it fits."""
    mel, sub = C.MelParams(), C.Subsampling()
    samples = C.max_audio_samples(mel)
    assert C.num_audio_frames(samples, mel, sub) == 500
    rows = C.num_encoder_frames(C.mel_columns(samples, mel), sub)
    assert rows == 501 == C.max_table_rows(mel, sub)
    opts = LlmEngineOptions(max_batch=16)
    assert opts.max_prompt_embedding_table_size // opts.max_batch == rows  # the backend's per-request cap
    shapes = encoder_profiles(EngineOptions(), mel, sub, encoder_dim=1024)
    assert shapes["projector"]["encoded"][2][1] == rows
    # The widest bucket never exceeds the encoder profile, whatever the width.
    for seconds in (0.5, 1.0, 2.0, 3.0, 7.0, 40.0):
        width = C.mel_bucket_columns(seconds, mel)
        assert C.bucketed_columns(C.max_mel_columns(mel), width, mel) == shapes["encoder"]["mel"][2][2]


def test_autocast_skips_the_reference_run_and_saves_external_data(tmp_path, monkeypatch):
    """modelopt is absent here: a stand-in records the call. The graph it returns is saved for real
    with its weights in a side file (the real encoder's ONNX is over protobuf's 2 GB)."""

    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    calls = []

    def convert_to_mixed_precision(**kw):
        calls.append(kw)
        return helper.make_model(graph)

    autocast = types.ModuleType("modelopt.onnx.autocast")
    autocast.convert_to_mixed_precision = convert_to_mixed_precision
    for name, mod in (
        ("modelopt", types.ModuleType("modelopt")),
        ("modelopt.onnx", types.ModuleType("modelopt.onnx")),
        ("modelopt.onnx.autocast", autocast),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    src = tmp_path / "encoder.onnx"
    # the encoder's inputs: mel_length's arithmetic (Cast -> Add -> Div) is kept out of bf16
    length_graph = helper.make_graph(
        [
            helper.make_node("Cast", ["mel_length"], ["f"], name="/len/Cast", to=TensorProto.FLOAT),
            helper.make_node("Add", ["f", "one"], ["g"], name="/len/Add"),
            helper.make_node("Div", ["g", "two"], ["h"], name="/len/Div.1"),
            helper.make_node("MatMul", ["mel", "w"], ["y"], name="/enc/MatMul"),
        ],
        "g",
        [
            helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("mel_length", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1]),
        ],
        [
            weight,
            numpy_helper.from_array(np.ones(1, np.float32), "one"),
            numpy_helper.from_array(np.ones(1, np.float32) * 2, "two"),
        ],
    )
    onnx.save(helper.make_model(length_graph), str(src))
    out = tensorrt_engine._autocast_onnx(src, "bf16")
    (kw,) = calls
    assert kw["onnx_path"] == str(src) and kw["low_precision_type"] == "bf16"
    assert kw["nodes_to_exclude"] == [r"/len/Cast$", r"/len/Add$", r"/len/Div\.1$"]  # anchored, escaped
    assert math.isinf(kw["data_max"]) and kw["op_types_to_exclude"] == ["Softmax"] and kw["keep_io_types"] is True
    assert out == tmp_path / "encoder.bf16.onnx"
    data = tmp_path / ("encoder.bf16.onnx" + tensorrt_engine.EXTERNAL_DATA_SUFFIX)
    assert data.stat().st_size >= 64 * 64 * 4  # the weights live beside the graph
    assert out.stat().st_size < 64 * 64 * 4
    loaded = onnx.load(str(out))  # reads the side file back
    assert np.array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.ones((64, 64), dtype=np.float32))


def test_the_length_walk_keeps_the_mel_length_arithmetic_and_nothing_on_the_mel_path(exported_random):
    """AutoCast 0.37 sends every float node not excluded to bf16: NeMo's calc_length in bf16 gives
    a wrong encoded length for most mel lengths up to 40 s (4001 -> 500, not 501). The walk finds
    the nodes to exclude on the tiny encoder's fp32 ONNX: every node between ``mel_length`` and
    ``encoded_length``, and none that reads ``mel``."""
    import onnx

    from canary_triton.artifacts import ExportManifest
    from canary_triton.export.tensorrt_engine import length_nodes

    manifest = ExportManifest.read(exported_random)
    graph = onnx.load(str(exported_random / manifest.files.encoder_onnx), load_external_data=False).graph
    found = length_nodes(graph)
    producer = {out: node for node in graph.node for out in node.output}

    def ancestors(names):
        seen, stack = set(), list(names)
        while stack:
            node = producer.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    mel_inputs = {i.name for i in graph.input} - {C.MEL_LENGTH.name}
    assert mel_inputs == {C.MEL.name}
    # nothing on the mel path: no found node has mel among its sources
    for node in graph.node:
        if node.name in found:
            sources = ancestors_inputs(node, producer)
            assert C.MEL_LENGTH.name in sources and C.MEL.name not in sources, node.name
    # every computing node that encoded_length derives from is found (the calc_length chain)
    chain = {n for n in ancestors([C.ENCODED_LENGTH.name]) if producer_op(graph, n) != "Constant"}
    assert chain and chain <= set(found)
    ops = [producer_op(graph, n) for n in found]
    assert {"Cast", "Add", "Sub", "Div"} <= set(ops) and ops.count("Div") == C.Subsampling().repeats
    assert len(found) == len(set(found)) and all(found)  # named, each once: AutoCast matches names


def producer_op(graph, name):
    return next(n.op_type for n in graph.node if n.name == name)


def ancestors_inputs(node, producer):
    """The graph inputs and initializers ``node`` reads from, through any number of nodes."""
    out, seen, stack = set(), set(), list(node.input)
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        parent = producer.get(tensor)
        if parent is None:
            out.add(tensor)
        else:
            stack.extend(parent.input)
    return out

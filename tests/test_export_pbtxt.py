"""canary_triton/export/pbtxt.py: templates that fail loudly, and a declaration rendered to the
exact config.pbtxt Triton reads (every model of a real export: tests/test_export_repository.py)."""

from __future__ import annotations

import re

import pytest

from canary_triton.contract import TensorSpec
from canary_triton.errors import CanaryTritonError
from canary_triton.export.pbtxt import CONFIG_TEMPLATE, Batching, ModelDecl, Step, fill_template, render

AUDIO = TensorSpec("audio", "TYPE_FP32", (-1,), ragged=True)
LEN = TensorSpec("len", "TYPE_INT32", (1,), optional=True, reshape=())
TEXT = TensorSpec("text", "TYPE_STRING", (1,))


def test_fill_template_fails_on_unfilled_and_unknown_fields():
    with pytest.raises(CanaryTritonError, match="left unfilled: name"):
        fill_template("name: ${name}", {})
    with pytest.raises(CanaryTritonError, match="does not have: extra"):
        fill_template("name: ${name}", {"name": "x", "extra": "y"})
    with pytest.raises(CanaryTritonError, match="unfilled field"):
        fill_template("a: ${a}", {"a": "${b}"})
    assert set(re.findall(r"\$\{(\w+)\}", CONFIG_TEMPLATE)) >= {"name", "inputs", "outputs"}


def test_a_python_model_renders_its_tensors_batching_and_noted_parameters():
    decl = ModelDecl(
        "m",
        "python",
        4,
        (AUDIO, LEN),
        (TEXT,),
        instance_count=2,
        batching=Batching(max_queue_delay_us=0, max_queue_size=8, default_timeout_us=500),
        decoupled=True,
        parameters={"b": "2", "a": "1"},
        notes={"b": "why b\nis 2"},
    )
    assert render(decl) == (
        'name: "m"\n'
        'backend: "python"\n'
        "max_batch_size: 4\n"
        "input [\n"
        '  {\n    name: "audio"\n    data_type: TYPE_FP32\n    dims: [ -1 ]\n    allow_ragged_batch: true\n  },\n'
        '  {\n    name: "len"\n    data_type: TYPE_INT32\n    dims: [ 1 ]\n    optional: true\n'
        "    reshape: { shape: [  ] }\n  }\n"
        "]\n"
        "output [\n"
        '  {\n    name: "text"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n  }\n'
        "]\n"
        "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
        "dynamic_batching {\n"
        "  max_queue_delay_microseconds: 0\n"
        "  default_queue_policy { max_queue_size: 8 timeout_action: REJECT default_timeout_microseconds: 500 }\n"
        "}\n"
        "model_transaction_policy { decoupled: true }\n"
        'parameters { key: "a" value: { string_value: "1" } }\n'
        "# why b\n"
        "# is 2\n"
        'parameters { key: "b" value: { string_value: "2" } }\n'
    )


def test_an_ensemble_renders_its_steps_and_no_instances():
    decl = ModelDecl("ens", "ensemble", 4, (AUDIO,), (TEXT,), steps=(Step("m", {"audio": "audio"}, {"text": "text"}),))
    text = render(decl)
    assert text.startswith('name: "ens"\nplatform: "ensemble"\n')
    assert "instance_group" not in text and "model_transaction_policy" not in text and "dynamic_batching" not in text
    assert text.endswith(
        "ensemble_scheduling {\n  step [\n    {\n"
        '      model_name: "m"\n      model_version: -1\n'
        '      input_map { key: "audio" value: "audio" }\n'
        '      output_map { key: "text" value: "text" }\n'
        "    }\n  ]\n}\n"
    )


def test_a_plan_names_its_file_per_compute_capability():
    decl = ModelDecl(
        "enc", "tensorrt_plan", 4, (AUDIO,), (TEXT,), kind="KIND_GPU", cc_model_filenames={"9.0": "e.sm90.plan"}
    )
    text = render(decl)
    assert 'platform: "tensorrt_plan"\ncc_model_filenames { key: "9.0" value: "e.sm90.plan" }\n' in text
    assert "instance_group [ { count: 1 kind: KIND_GPU } ]" in text

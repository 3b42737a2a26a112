"""A Triton model's ``config.pbtxt`` from its declaration: :class:`ModelDecl` (backend, tensors,
instances, dynamic batching, parameters, ensemble steps) rendered by :func:`render` from
:data:`CONFIG_TEMPLATE` with :func:`fill_template`, which fails on any unfilled ``${field}`` (as
TensorRT-LLM's ``fill_template.py`` would leave it and Triton would then reject it at load).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from canary_triton.contract import TensorSpec
from canary_triton.errors import CanaryTritonError

CONFIG_TEMPLATE = """name: "${name}"
${backend}
max_batch_size: ${max_batch_size}
${inputs}
${outputs}
${instance_group}
${batching}
${transaction_policy}
${parameters}
${ensemble_scheduling}
"""

_FIELD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(template: str, values: dict[str, str]) -> str:
    """Substitute every ``${field}``; unknown fields in ``values`` and unfilled ones are errors."""
    wanted = set(_FIELD.findall(template))
    missing = sorted(wanted - values.keys())
    if missing:
        raise CanaryTritonError(f"template field(s) left unfilled: {', '.join(missing)}")
    extra = sorted(values.keys() - wanted)
    if extra:
        raise CanaryTritonError(f"value(s) for field(s) the template does not have: {', '.join(extra)}")
    text = _FIELD.sub(lambda m: values[m.group(1)], template)
    if _FIELD.search(text):
        raise CanaryTritonError(f"a filled value itself holds an unfilled field: {_FIELD.search(text).group(0)}")
    return "\n".join(line for line in text.splitlines() if line.strip()) + "\n"


@dataclass(frozen=True)
class Batching:
    max_queue_delay_us: int
    max_queue_size: int  # beyond this, requests are rejected at once (UNAVAILABLE)
    default_timeout_us: int  # 0: no queue timeout


@dataclass(frozen=True)
class Step:
    model: str
    inputs: dict[str, str]  # model input -> ensemble tensor
    outputs: dict[str, str]  # model output -> ensemble tensor


@dataclass(frozen=True)
class ModelDecl:
    name: str
    backend: str  # python | tensorrt_plan | tensorrtllm | ensemble
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_count: int = 1
    kind: str = "KIND_CPU"
    batching: Batching | None = None
    decoupled: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    cc_model_filenames: dict[str, str] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)  # parameter key -> comment written above it


def _tensor(spec: TensorSpec, io: str) -> str:
    parts = [f'name: "{spec.name}"', f"data_type: {spec.dtype}", f"dims: [ {', '.join(map(str, spec.dims))} ]"]
    if io == "input":
        if spec.optional:
            parts.append("optional: true")
        if spec.ragged:
            parts.append("allow_ragged_batch: true")
    if spec.reshape is not None:
        parts.append(f"reshape: {{ shape: [ {', '.join(map(str, spec.reshape))} ] }}")
    return "  {\n    " + "\n    ".join(parts) + "\n  }"


def render(decl: ModelDecl) -> str:
    if decl.backend == "ensemble":
        backend = 'platform: "ensemble"'
    elif decl.backend == "tensorrt_plan":
        backend = 'platform: "tensorrt_plan"'
    else:
        backend = f'backend: "{decl.backend}"'
    if decl.cc_model_filenames:
        backend += "\n" + "\n".join(
            f'cc_model_filenames {{ key: "{k}" value: "{v}" }}' for k, v in sorted(decl.cc_model_filenames.items())
        )
    values = {
        "name": decl.name,
        "backend": backend,
        "max_batch_size": str(decl.max_batch_size),
        "inputs": "input [\n" + ",\n".join(_tensor(t, "input") for t in decl.inputs) + "\n]",
        "outputs": "output [\n" + ",\n".join(_tensor(t, "output") for t in decl.outputs) + "\n]",
        "instance_group": ""
        if decl.backend == "ensemble"
        else f"instance_group [ {{ count: {decl.instance_count} kind: {decl.kind} }} ]",
        "batching": "",
        "transaction_policy": f"model_transaction_policy {{ decoupled: {'true' if decl.decoupled else 'false'} }}"
        if decl.backend != "ensemble"
        else "",
        "parameters": "\n".join(
            "".join(f"# {line}\n" for line in decl.notes.get(k, "").splitlines())
            + f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
            for k, v in sorted(decl.parameters.items())
        ),
        "ensemble_scheduling": "",
    }
    if decl.batching is not None:
        b = decl.batching
        policy = f"default_queue_policy {{ max_queue_size: {b.max_queue_size}"
        if b.default_timeout_us:
            policy += f" timeout_action: REJECT default_timeout_microseconds: {b.default_timeout_us}"
        policy += " }"
        values["batching"] = (
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {b.max_queue_delay_us}\n  {policy}\n}}"
        )
    if decl.steps:
        steps = []
        for s in decl.steps:
            maps = [f'      input_map {{ key: "{k}" value: "{v}" }}' for k, v in s.inputs.items()]
            maps += [f'      output_map {{ key: "{k}" value: "{v}" }}' for k, v in s.outputs.items()]
            steps.append(
                f'    {{\n      model_name: "{s.model}"\n      model_version: -1\n' + "\n".join(maps) + "\n    }"
            )
        values["ensemble_scheduling"] = "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"
    return fill_template(CONFIG_TEMPLATE, values)

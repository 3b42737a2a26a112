"""A fake of Triton's ``triton_python_backend_utils`` for running the models in-process.

``FakePbUtils()`` has the attributes the models use (Tensor, InferenceRequest/Response,
TritonError with its codes, Logger, MetricFamily, the FINAL flag...), and records what they do:
each request's sends and flags (:class:`ResponseSender`), log lines, metric values and BLS calls.
A BLS call (``InferenceRequest.exec`` / ``async_exec``) goes to what :meth:`FakePbUtils.route`
registered for its model: a function returning canned responses, or another model instance run
in-process. Like Triton's stub it refuses a send after the FINAL flag.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

FINAL = 1  # TRITONSERVER_RESPONSE_COMPLETE_FINAL


class Tensor:
    def __init__(self, name: str, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor {name!r}: a numpy array is required, got {type(array).__name__}")
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def is_cpu(self) -> bool:
        return True

    def __repr__(self):
        return f"Tensor({self._name!r}, {self._array.dtype}{list(self._array.shape)})"


class TritonError(Exception):
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


#: the code names, for assertion messages
CODE_NAMES = {v: k for k, v in vars(TritonError).items() if k.isupper()}


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None, parameters=None):
        self._tensors, self._error = list(output_tensors), error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def outputs(self) -> dict[str, np.ndarray]:
        """(Fake only) the output arrays by name."""
        return {t.name(): t.as_numpy() for t in self._tensors}


class ClosedSender(RuntimeError):
    pass


class ResponseSender:
    """Records every send; ``done`` is set at the FINAL flag. A send after it raises, as in Triton."""

    def __init__(self, request: InferenceRequest):
        self._request = request
        self.sent: list[tuple[InferenceResponse | None, int]] = []
        self.done = threading.Event()
        self._lock = threading.Lock()

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        with self._lock:
            if self.done.is_set():
                raise ClosedSender("Unable to send response. Response sender has been closed.")
            self.sent.append((response, flags))
            if flags & FINAL:
                self.done.set()

    def is_cancelled(self) -> bool:
        return self._request.is_cancelled()

    # --- fake only ---------------------------------------------------------------------------
    def wait(self, timeout_s: float = 300.0) -> list[InferenceResponse | None]:
        """Every response once the FINAL flag came (a bound against a hang, not a speed target)."""
        if not self.done.wait(timeout_s):
            raise AssertionError(f"no FINAL flag within {timeout_s} s; sent so far: {self.sent}")
        return [r for r, _ in self.sent]

    @property
    def flags(self) -> list[int]:
        return [f for _, f in self.sent]

    def final(self) -> InferenceResponse:
        """The one response of a unary answer (exactly one send, with the FINAL flag)."""
        responses = self.wait()
        assert self.flags == [FINAL], f"expected one FINAL response, got flags {self.flags}"
        return responses[0]


class Logger:
    """Records each line as (level, message)."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def log_info(self, message):
        self.lines.append(("info", message))

    def log_warn(self, message):
        self.lines.append(("warn", message))

    def log_error(self, message):
        self.lines.append(("error", message))

    def log_verbose(self, message):
        self.lines.append(("verbose", message))


class Metric:
    def __init__(self, family: MetricFamily, labels: dict[str, str]):
        self.family, self.labels, self._value = family, dict(labels), 0.0

    def increment(self, value: float) -> None:
        if self.family.kind == MetricFamily.COUNTER and value < 0:
            raise ValueError("a counter cannot decrease")
        with self.family.changed:
            self._value += value
            self.family.changed.notify_all()

    def set(self, value: float) -> None:
        if self.family.kind != MetricFamily.GAUGE:
            raise TypeError("set() is only for gauges")
        with self.family.changed:
            self._value = float(value)
            self.family.changed.notify_all()

    def value(self) -> float:
        return self._value


class MetricFamily:
    COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
    registry: dict[str, MetricFamily]  # set per FakePbUtils
    changed: threading.Condition  # set per FakePbUtils: notified at every metric update

    def __init__(self, name: str, description: str, kind: int):
        self.name, self.description, self.kind = name, description, kind
        known = self.registry.get(name)
        if known is not None:  # another model's: Triton shares a family of the same name and kind
            if (known.kind, known.description) != (kind, description):
                raise ValueError(f"metric family {name!r} registered again with another kind or description")
            self.metrics = known.metrics
        else:
            self.metrics: list[Metric] = []
            self.registry[name] = self

    def Metric(self, labels: dict[str, str] | None = None) -> Metric:  # noqa: N802  (Triton's name)
        if any(m.labels == (labels or {}) for m in self.metrics):
            raise ValueError(f"metric {self.name}{labels} created twice")
        m = Metric(self, labels or {})
        self.metrics.append(m)
        return m


class InferenceRequest:
    """A request a model receives (tests build them with :meth:`FakePbUtils.request`) or sends
    through BLS (``exec``)."""

    pb: FakePbUtils  # set per FakePbUtils

    def __init__(
        self,
        model_name: str = "",
        inputs=(),
        requested_output_names=(),
        request_id: str = "",
        correlation_id: int = 0,
        flags: int = 0,
        timeout: int = 0,
        **_,
    ):
        self.model_name, self._inputs = model_name, list(inputs)
        self._requested = list(requested_output_names)
        self._id, self._cancelled = request_id, threading.Event()
        self._sender = ResponseSender(self)

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def get_response_sender(self) -> ResponseSender:
        return self._sender

    def exec(self, decoupled: bool = False):
        return self.pb._exec(self, decoupled)

    async def async_exec(self, decoupled: bool = False):
        return self.exec(decoupled)

    # --- fake only ---------------------------------------------------------------------------
    def cancel(self) -> None:
        """The client cancels: ``is_cancelled()`` turns true (request and sender)."""
        self._cancelled.set()

    @property
    def sender(self) -> ResponseSender:
        return self._sender


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def using_decoupled_model_transaction_policy(model_config: dict) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class FakePbUtils:
    """One fake ``pb_utils`` module with its own records (one per test)."""

    TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    Tensor = Tensor
    TritonError = TritonError
    InferenceResponse = InferenceResponse
    get_input_tensor_by_name = staticmethod(get_input_tensor_by_name)
    get_output_tensor_by_name = staticmethod(get_output_tensor_by_name)
    using_decoupled_model_transaction_policy = staticmethod(using_decoupled_model_transaction_policy)

    def __init__(self):
        self.Logger = Logger()
        self.metric_families: dict[str, MetricFamily] = {}
        self.metrics_changed = threading.Condition()
        self.MetricFamily = type(
            "MetricFamily", (MetricFamily,), {"registry": self.metric_families, "changed": self.metrics_changed}
        )
        self.InferenceRequest = type("InferenceRequest", (InferenceRequest,), {"pb": self})
        self.routes: dict[str, object] = {}
        self.calls: list[InferenceRequest] = []  # every BLS request, in order
        self._lock = threading.Lock()

    # --- building requests -------------------------------------------------------------------
    def request(self, inputs: dict[str, np.ndarray], request_id: str = "") -> InferenceRequest:
        """A request as the model receives it: ``inputs`` by name (arrays with the batch dimension)."""
        return self.InferenceRequest(inputs=[Tensor(k, v) for k, v in inputs.items()], request_id=request_id)

    # --- metrics -----------------------------------------------------------------------------
    def metric(self, name: str, **labels: str) -> float:
        """The value of the metric of family ``name`` whose labels include ``labels``."""
        family = self.metric_families[name]
        found = [m for m in family.metrics if all(m.labels.get(k) == v for k, v in labels.items())]
        assert len(found) == 1, f"{len(found)} metrics {name}{labels}"
        return found[0].value()

    def wait_for_metrics(self, predicate, timeout_s: float = 300.0) -> None:
        """Wait until ``predicate()`` holds, re-checked at each metric update (a bound against a
        hang, not a speed target)."""
        with self.metrics_changed:
            if not self.metrics_changed.wait_for(predicate, timeout_s):
                raise AssertionError(f"metrics did not reach the expected state within {timeout_s} s")

    # --- BLS ---------------------------------------------------------------------------------
    def route(self, model: str, target) -> None:
        """BLS calls to ``model`` go to ``target``: a model instance (run in-process through its
        ``execute``) or a function ``request -> response`` (unary) / ``-> list of responses``
        (decoupled; the last one should carry what the FINAL one does)."""
        self.routes[model] = target

    def calls_to(self, model: str) -> list[InferenceRequest]:
        return [r for r in self.calls if r.model_name == model]

    def _exec(self, request: InferenceRequest, decoupled: bool):
        with self._lock:
            self.calls.append(request)
        if request.model_name not in self.routes:
            error = TritonError(
                f"Request for unknown model: '{request.model_name}' is not found", TritonError.NOT_FOUND
            )
            response = InferenceResponse(error=error)
            return iter([response]) if decoupled else response
        target = self.routes[request.model_name]
        if hasattr(target, "execute"):
            responses = target.execute([request])
            if responses is None:  # a decoupled or threaded model: it answers through the sender
                sent = request.sender.wait()
            else:
                sent = [responses[0]]
        else:
            out = target(request)
            if decoupled:  # read as the caller reads: a generator route answers token by token
                return (r if r is not None else InferenceResponse() for r in out)
            sent = [out]
        if decoupled:
            return iter([r if r is not None else InferenceResponse() for r in sent])
        if len(sent) != 1:
            raise AssertionError(f"a unary BLS call to {request.model_name} got {len(sent)} responses")
        return sent[0]


def ensemble_route(pb: FakePbUtils, repository: Path, model: str):
    """A BLS target that runs the ensemble ``model`` of ``repository`` as Triton's scheduler would:
    each step (in the config's order, which the generator writes topologically) is a unary BLS
    call with the tensors its ``input_map`` names (absent optional ones left out); the first error
    is the answer; the response holds the ensemble's outputs."""
    from canary_triton.export.gpu_checks import parse_config

    config = parse_config(Path(repository) / model / "config.pbtxt")
    steps = list(config.ensemble_scheduling.step)
    outputs = [o.name for o in config.output]

    def run(request):
        tensors = {t.name(): t.as_numpy() for t in request.inputs()}
        for step in steps:
            inputs = [Tensor(name, tensors[ens]) for name, ens in step.input_map.items() if ens in tensors]
            call = pb.InferenceRequest(
                model_name=step.model_name, inputs=inputs, requested_output_names=list(step.output_map)
            )
            response = call.exec()
            if response.has_error():
                return response
            got = response.outputs()
            tensors.update({ens: got[name] for name, ens in step.output_map.items()})
        return InferenceResponse([Tensor(name, tensors[name]) for name in outputs])

    return run


def initialize_args(repository: Path, model: str, parameters: dict[str, str] | None = None) -> dict[str, str]:
    """What Triton passes to ``initialize`` for ``model`` of a generated repository: its config
    (parsed from config.pbtxt, as JSON; ``parameters`` set or replace some) and the model's folder."""
    from google.protobuf import json_format

    from canary_triton.export.gpu_checks import parse_config

    config = json_format.MessageToDict(
        parse_config(Path(repository) / model / "config.pbtxt"), preserving_proto_field_name=True
    )
    for key, value in (parameters or {}).items():
        config.setdefault("parameters", {})[key] = {"string_value": value}
    return {
        "model_config": json.dumps(config),
        "model_name": model,
        "model_version": "1",
        "model_repository": str(Path(repository) / model),
        "model_instance_kind": "CPU",
        "model_instance_name": f"{model}_0_0",
        "model_instance_device_id": "0",
    }


def error_of(response: InferenceResponse) -> tuple[str, str]:
    """(code name, message) of an error response."""
    assert response is not None and response.has_error(), f"expected an error response, got {response!r}"
    return CODE_NAMES[response.error().code()], response.error().message()


def load_model(
    cls, repository: Path, model: str, pb: FakePbUtils | None = None, parameters: dict[str, str] | None = None
):
    """An instance of the library model class ``cls`` over a fresh fake (or ``pb``), initialized
    as Triton would for ``model`` of ``repository`` (``parameters``: see :func:`initialize_args`)."""
    instance = cls(pb or FakePbUtils())
    instance.initialize(initialize_args(repository, model, parameters))
    return instance
